/* parallel.c: amil_parallel with one POSIX thread per extra range.  A bag
 * is split into a few ranges of hundreds of patches each, so creating the
 * threads (tens of microseconds) costs little next to the work. */
#include <pthread.h>

#include "amil.h"
#include "parallel.h"

#define MAX_THREADS 64

struct range {
    amil_task_fn *fn;
    void *ctx;
    int first, end, thread;
};

static void *run(void *arg)
{
    struct range *r = arg;
    r->fn(r->ctx, r->first, r->end, r->thread);
    return NULL;
}

void amil_parallel(int tasks, amil_task_fn *fn, void *ctx)
{
    int threads = amil_thread_count();
    threads = threads < tasks ? threads : tasks;
    threads = threads < MAX_THREADS ? threads : MAX_THREADS;
    if (threads <= 1) {
        if (tasks > 0)
            fn(ctx, 0, tasks, 0);
        return;
    }
    struct range ranges[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < threads; t++)
        ranges[t] = (struct range){fn, ctx, (int)((long)tasks * t / threads),
                                   (int)((long)tasks * (t + 1) / threads), t};
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, run, &ranges[t]) == 0;
    run(&ranges[0]);
    for (int t = 1; t < threads; t++)
        if (started[t])
            pthread_join(ids[t], NULL);
        else   /* no thread to be had: do its share here */
            run(&ranges[t]);
}

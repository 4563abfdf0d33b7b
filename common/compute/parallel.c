/* parallel.c: amil_parallel on a pool of POSIX threads, started on first
 * use and kept for the life of the process: a training step makes about ten
 * parallel calls, and starting threads for each cost about 50 µs apiece on
 * the machines measured.  Waking a sleeping thread costs too (a condition
 * variable's round trip under this machine's hypervisor), so each side
 * first spins a little on the pool's counters, then sleeps. */
#include <pthread.h>
#include <cblas.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "base/base.h"
#include "compute/parallel.h"

#define MAX_THREADS 64

static int thread_count = 1;

void amil_threads(int n)
{
    thread_count = n > 0 ? n : 1;
    openblas_set_num_threads(thread_count);
}

int amil_thread_count(void) { return thread_count; }

void amil_threads_to_lanes(void) { openblas_set_num_threads(1); }

struct range {
    amil_task_fn *fn;
    void *ctx;
    int first, end, thread;
};

/* Workers 1 .. started-1 wait for a new generation; those below `active`
 * run their range of it and count down `pending`. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    int started;
    atomic_ulong generation;   /* written under lock; read with or without */
    int active;
    atomic_int pending;
    struct range ranges[MAX_THREADS];
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          1, 0, 0, 0, {{0}}};

/* How long a thread spins on a counter before it sleeps: past the gap
 * between a step's parallel calls when a bag is small.  Timed, not
 * counted: a pause instruction takes from a few cycles to 140. */
#define SPIN_NS 20000
#if defined(__x86_64__) || defined(__i386__)
#define RELAX() __builtin_ia32_pause()
#else
#define RELAX() ((void)0)
#endif

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Spins until the generation is past seen or pending is 0 (whichever is
 * asked: wait_for_generation), or SPIN_NS pass. */
static void spin(int wait_for_generation, unsigned long seen)
{
    long long until = now_ns() + SPIN_NS;
    while (wait_for_generation ? atomic_load(&pool.generation) == seen
                               : atomic_load(&pool.pending) > 0) {
        for (int i = 0; i < 64; i++)
            RELAX();
        if (now_ns() > until)
            return;
    }
}

static void run(const struct range *r) { r->fn(r->ctx, r->first, r->end, r->thread); }

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    unsigned long seen = 0;
    for (;;) {
        spin(1, seen);
        pthread_mutex_lock(&pool.lock);
        while (atomic_load(&pool.generation) == seen)
            pthread_cond_wait(&pool.wake, &pool.lock);
        seen = atomic_load(&pool.generation);
        int active = pool.active;
        struct range r = pool.ranges[t];
        pthread_mutex_unlock(&pool.lock);
        if (t >= active)
            continue;
        run(&r);
        if (atomic_fetch_sub(&pool.pending, 1) == 1) {
            pthread_mutex_lock(&pool.lock);   /* the caller may be asleep */
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
    return NULL;
}

/* Starts workers up to `threads` in all; returns how many there are (fewer
 * if the system would not give more). */
static int grow(int threads)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    while (pool.started < threads) {
        pthread_t id;
        if (pthread_create(&id, &attr, worker, (void *)(intptr_t)pool.started) != 0)
            break;
        pool.started++;
    }
    pthread_attr_destroy(&attr);
    return pool.started;
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
    pthread_mutex_lock(&pool.lock);
    int workers = grow(threads);
    for (int t = 0; t < threads; t++)
        pool.ranges[t] = (struct range){fn, ctx, (int)((long)tasks * t / threads),
                                        (int)((long)tasks * (t + 1) / threads), t};
    pool.active = workers < threads ? workers : threads;
    atomic_store(&pool.pending, pool.active - 1);
    atomic_fetch_add(&pool.generation, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run(&pool.ranges[0]);
    for (int t = pool.active; t < threads; t++)   /* no worker to be had: here */
        run(&pool.ranges[t]);
    spin(0, 0);
    pthread_mutex_lock(&pool.lock);
    while (atomic_load(&pool.pending) > 0)
        pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
}

/* parallel.h: a loop split over threads, for the lane kernels' groups.
 *
 * amil_parallel(tasks, fn, ctx) calls fn(ctx, first, end, thread) once per
 * thread with a contiguous range [first, end) of the tasks, thread 0 taking
 * the first range, in the calling thread; it returns when all are done.
 * The ranges depend only on tasks and the thread count, so a caller that
 * keeps one partial sum per thread and adds them in thread order gets the
 * same bytes every run. */
#ifndef AMIL_PARALLEL_H
#define AMIL_PARALLEL_H

typedef void amil_task_fn(void *ctx, int first, int end, int thread);

/* The threads amil_parallel uses (and OpenBLAS's; set by amil_threads). */
int amil_thread_count(void);
/* Runs the tasks; with one thread or one task, in the caller alone.  One
 * caller at a time (the program's main thread): the pool is shared. */
void amil_parallel(int tasks, amil_task_fn *fn, void *ctx);

#endif

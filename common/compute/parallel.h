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

/* The thread policy, all of it here.  amil_threads(n) gives the process n
 * threads [1]: amil_parallel's, and OpenBLAS's for the products.  Work
 * that splits its lane kernels over the threads itself calls
 * amil_threads_to_lanes() first: OpenBLAS (its small products) then stays
 * on one, or its spinning workers take a core from the lanes (measured: a
 * 2-thread A-MIL step 38 ms with OpenBLAS on two, 26 ms on one). */
void amil_threads(int n);
int amil_thread_count(void);
void amil_threads_to_lanes(void);
/* Runs the tasks; with one thread or one task, in the caller alone.  One
 * caller at a time (the program's main thread): the pool is shared. */
void amil_parallel(int tasks, amil_task_fn *fn, void *ctx);

#endif

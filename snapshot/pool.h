/* SPDX-License-Identifier: MIT */
#ifndef VMM_SNAPSHOT_POOL_H
#define VMM_SNAPSHOT_POOL_H

/*
 * A small pool of worker threads for the image's page batches
 * (compressing them while the writer goes on scanning and sending,
 * decompressing them into guest memory while the reader goes on
 * receiving). Jobs run in no particular order; their owner keeps them in
 * its own ordered ring and waits for each before it uses the result, so
 * the stream's order never depends on the workers'.
 *
 * Each worker has a context slot (its codec contexts), created by the
 * job that first needs it and freed by @ctx_free when the pool goes.
 */

#include <stdbool.h>

#include "kernel/util/compiler.h"

struct pool;

struct pool_job {
	void (*fn)(struct pool_job *job, void **wctx);
	/* The pool's. */
	struct pool_job *next;
	bool done;
};

/* Starts @threads workers (1 to POOL_MAX_THREADS). */
#define POOL_MAX_THREADS 64
int pool_create(unsigned int threads, void (*ctx_free)(void *ctx),
		struct pool **out) __must_check;

/* Queues @job (its fn set); it must not be queued already. */
void pool_submit(struct pool *p, struct pool_job *job);

/* Waits until @job (submitted) has run. */
void pool_wait(struct pool *p, struct pool_job *job);

/* Jobs queued that no worker has taken yet: non-zero when every worker
 * is busy. */
unsigned int pool_queued(struct pool *p);

/* True if @job (submitted) has run, without waiting. */
bool pool_done(struct pool *p, struct pool_job *job);

/* Waits for the jobs queued, then stops the workers. NULL is a no-op. */
void pool_destroy(struct pool *p);

/* Workers for a codec pool when the caller asks for the default (0):
 * the CPUs this process may use, at most @max. */
unsigned int pool_default_threads(unsigned int max);

#endif /* VMM_SNAPSHOT_POOL_H */

/* SPDX-License-Identifier: MIT */
/* Worker threads for page batches (pool.h). */
#include "snapshot/pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

struct worker {
	struct pool *p;
	pthread_t thread;
	void *ctx;
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t work;	      /* a job queued, or quit */
	pthread_cond_t done;	      /* a job done */
	struct pool_job *head, *tail; /* [lock] queued, oldest first */
	unsigned int queued;	      /* [lock] jobs in that list */
	bool quit;		      /* [lock] */
	void (*ctx_free)(void *ctx);
	unsigned int nr;
	struct worker w[];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pool *p = w->p;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct pool_job *j = p->head;

		if (!j) {
			if (p->quit)
				break;
			pthread_cond_wait(&p->work, &p->lock);
			continue;
		}
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		p->queued--;
		pthread_mutex_unlock(&p->lock);
		j->fn(j, &w->ctx);
		pthread_mutex_lock(&p->lock);
		j->done = true;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int pool_create(unsigned int threads, void (*ctx_free)(void *ctx),
		struct pool **out)
{
	struct pool *p;
	unsigned int i;
	int ret;

	if (!threads || threads > POOL_MAX_THREADS)
		return -EINVAL;
	p = calloc(1, sizeof(*p) + threads * sizeof(p->w[0]));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->ctx_free = ctx_free;
	for (i = 0; i < threads; i++) {
		p->w[i].p = p;
		ret = -pthread_create(&p->w[i].thread, NULL, worker_main,
				      &p->w[i]);
		if (ret) {
			p->nr = i;
			pool_destroy(p);
			return ret;
		}
	}
	p->nr = threads;
	*out = p;
	return 0;
}

void pool_submit(struct pool *p, struct pool_job *job)
{
	job->next = NULL;
	job->done = false;
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	p->queued++;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

void pool_wait(struct pool *p, struct pool_job *job)
{
	pthread_mutex_lock(&p->lock);
	while (!job->done)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

unsigned int pool_queued(struct pool *p)
{
	unsigned int n;

	pthread_mutex_lock(&p->lock);
	n = p->queued;
	pthread_mutex_unlock(&p->lock);
	return n;
}

bool pool_done(struct pool *p, struct pool_job *job)
{
	bool done;

	pthread_mutex_lock(&p->lock);
	done = job->done;
	pthread_mutex_unlock(&p->lock);
	return done;
}

void pool_destroy(struct pool *p)
{
	unsigned int i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->quit = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->nr; i++) {
		pthread_join(p->w[i].thread, NULL);
		if (p->w[i].ctx && p->ctx_free)
			p->ctx_free(p->w[i].ctx);
	}
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

unsigned int pool_default_threads(unsigned int max)
{
	cpu_set_t set;
	int n = 0;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	if (n < 1)
		n = 1;
	return (unsigned int)n < max ? (unsigned int)n : max;
}

/* SPDX-License-Identifier: MIT */
/*
 * vCPU throttling (vm.h, vm_throttle()): a thread that pauses every vCPU
 * for a share of each period, so that a guest dirtying memory faster than
 * a migration can send it slows down until the rounds shrink. It uses
 * the ordinary pause, which nests with every other (a freeze for a dirty
 * harvest, the control socket's pause), so it never resumes what another
 * paused.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "kernel/util/log.h"
#include "kernel/vm.h"
#include "kernel/vm_priv.h"

struct throttle {
	struct vm *vm;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int pct; /* [lock] share of each period paused */
	bool quit;	  /* [lock] */
};

static void deadline_in(struct timespec *ts, uint64_t ns)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ns += (uint64_t)ts->tv_nsec;
	ts->tv_sec += (time_t)(ns / 1000000000ULL);
	ts->tv_nsec = (long)(ns % 1000000000ULL);
}

/* Waits @ns or until told to quit (or the level changes); lock held. */
static void nap(struct throttle *t, uint64_t ns)
{
	struct timespec ts;
	unsigned int pct = t->pct;

	deadline_in(&ts, ns);
	while (!t->quit && t->pct == pct &&
	       pthread_cond_timedwait(&t->cond, &t->lock, &ts) != ETIMEDOUT)
		;
}

static void *throttle_main(void *arg)
{
	struct throttle *t = arg;
	const uint64_t period = VM_THROTTLE_PERIOD_MS * 1000000ULL;

	pthread_mutex_lock(&t->lock);
	while (!t->quit) {
		unsigned int pct = t->pct;

		if (!pct) {
			pthread_cond_wait(&t->cond, &t->lock);
			continue;
		}
		pthread_mutex_unlock(&t->lock);
		if (vm_pause(t->vm) < 0) {
			pthread_mutex_lock(&t->lock);
			break;
		}
		pthread_mutex_lock(&t->lock);
		nap(t, period * pct / 100);
		vm_resume(t->vm);
		nap(t, period * (100 - pct) / 100);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int vm_throttle(struct vm *vm, unsigned int pct)
{
	struct throttle *t = vm->throttle;
	pthread_condattr_t ca;
	int ret;

	if (pct > VM_THROTTLE_MAX)
		pct = VM_THROTTLE_MAX;
	if (!t) {
		if (!pct)
			return 0;
		t = calloc(1, sizeof(*t));
		if (!t)
			return -ENOMEM;
		t->vm = vm;
		pthread_mutex_init(&t->lock, NULL);
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&t->cond, &ca);
		pthread_condattr_destroy(&ca);
		t->pct = pct;
		ret = -pthread_create(&t->thread, NULL, throttle_main, t);
		if (ret < 0) {
			pthread_cond_destroy(&t->cond);
			pthread_mutex_destroy(&t->lock);
			free(t);
			return ret;
		}
		vm->throttle = t;
		return 0;
	}
	pthread_mutex_lock(&t->lock);
	t->pct = pct;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

unsigned int vm_throttle_level(const struct vm *vm)
{
	struct throttle *t = vm->throttle;
	unsigned int pct;

	if (!t)
		return 0;
	pthread_mutex_lock(&t->lock);
	pct = t->pct;
	pthread_mutex_unlock(&t->lock);
	return pct;
}

void vm_throttle_destroy(struct vm *vm)
{
	struct throttle *t = vm->throttle;

	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->quit = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->thread, NULL);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
	vm->throttle = NULL;
}

/* SPDX-License-Identifier: MIT */
/*
 * The machine's event loop (machine_run(), and machine_poll() for one pass
 * of it from inside a handler), the dirty harvests it drives, the fds it
 * watches for others, and the announcement after a migration.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "kernel/dev/serial.h"
#include "kernel/dev/virtio.h"
#include "kernel/dirty.h"
#include "kernel/machine.h"
#include "kernel/machine_priv.h"
#include "kernel/mem.h"
#include "kernel/util/bitmap.h"
#include "kernel/util/log.h"
#include "kernel/vm.h"

/* Event sources of the loop, stored in epoll_event.data.u64. */
enum {
	EV_STOP,
	EV_SIGNAL,
	EV_STDIN,
	EV_NET_WAKE,
	EV_TRACK,
	EV_NET = 16,
	EV_USER = 64,
};

/*
 * One harvest round: sync, then take (and drop) the RAM bitmap, unless an
 * incremental save wants it: then it stays and accumulates.
 */
static void machine_harvest(struct machine *m)
{
	int ret = dirty_sync(m->vm);

	if (ret < 0) {
		pr_warn("dirty harvest: %s", strerror(-ret));
		return;
	}
	if (!m->dirty_keep)
		dirty_take(m->ram, m->track_scratch);
}

static int dirty_collect(struct machine *m, uint64_t *bitmap)
{
	int ret;

	if (!dirty_active(m->vm)) {
		ret = dirty_start(m->vm);
		if (ret < 0)
			return ret;
	}
	ret = dirty_sync(m->vm);
	if (ret < 0)
		return ret;
	dirty_take(m->ram, bitmap);
	if (m->dirty_share) {
		bitmap_or_at_atomic(m->dirty_share, 0, bitmap,
				    mem_seg_pages(m->ram));
		*m->dirty_share_any = true;
	}
	m->dirty_keep = true;
	return 0;
}

int machine_dirty_collect(struct machine *m, uint64_t *bitmap)
{
	return m->freezes ? dirty_collect(m, bitmap) : -EBUSY;
}

int machine_dirty_begin(struct machine *m)
{
	uint64_t *bm = bitmap_alloc(mem_seg_pages(m->ram));
	int ret;

	if (!bm)
		return -ENOMEM;
	ret = dirty_collect(m, bm);
	bitmap_free(bm);
	return ret;
}

void machine_dirty_return(struct machine *m, const uint64_t *bitmap)
{
	mem_seg_dirty_or(m->ram, bitmap);
}

/* Runs in a vCPU thread with the device lock held: only signal. */
static void net_wakeup(void *opaque)
{
	struct machine *m = opaque;
	uint64_t one = 1;

	if (write(m->net_wake_efd, &one, sizeof(one)) < 0)
		pr_debug("net wakeup: %s", strerror(errno));
}

/* Starts or stops watching back end @k (level-triggered). */
static void net_watch(struct machine *m, int ep, unsigned int k, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0,
				  .data.u64 = EV_NET + k };
	int fd = virtio_net_fd(m->nets[k]);

	if (fd < 0 || m->net_paused[k] == !on)
		return;
	m->net_paused[k] = !on;
	epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

/* Watches every paused back end again (after a wakeup or a timeout). */
static void net_rewatch(struct machine *m, int ep)
{
	unsigned int k;

	for (k = 0; k < m->nr_nets; k++)
		net_watch(m, ep, k, true);
}

static int ep_add(int ep, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = { .events = events, .data.u64 = tag };

	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* Handles one event; returns true when the loop should end. */
static bool machine_event(struct machine *m, int ep, int sfd, uint64_t tag,
			  int *signo)
{
	struct signalfd_siginfo si;
	char buf[64];
	ssize_t r;

	switch (tag) {
	case EV_STOP:
		return true;
	case EV_SIGNAL:
		if (read(sfd, &si, sizeof(si)) != sizeof(si))
			return false;
		*signo = (int)si.ssi_signo;
		vm_stop_detail(m->vm, VM_EXIT_REQUESTED, "stopped by signal %d",
			       *signo);
		return true;
	case EV_STDIN:
		r = read(STDIN_FILENO, buf, sizeof(buf));
		if (r <= 0)
			epoll_ctl(ep, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
		else if (m->serial)
			serial_rx(m->serial, buf, (size_t)r);
		return false;
	case EV_TRACK:
		if (read(m->track_fd, buf, 8) == 8)
			machine_harvest(m);
		return false;
	case EV_NET_WAKE:
		if (read(m->net_wake_efd, buf, 8) == 8)
			net_rewatch(m, ep);
		return false;
	default:
		if (tag >= EV_USER && tag < EV_USER + MACHINE_MAX_WATCH) {
			unsigned int w = (unsigned int)(tag - EV_USER);

			if (m->watch[w].fd >= 0)
				m->watch[w].fn(m, m->watch[w].fd,
					       m->watch[w].opaque);
		} else if (tag >= EV_NET && tag < EV_NET + m->nr_nets) {
			unsigned int k = (unsigned int)(tag - EV_NET);

			/* Nothing taken: no buffers, driver not up, or a dead
			 * back end. Stop watching until a wakeup or the
			 * periodic retry, or the loop would spin. */
			if (virtio_net_rx_poll(m->nets[k]) <= 0)
				net_watch(m, ep, k, false);
		}
		return false;
	}
}

enum vm_exit_reason machine_run(struct machine *m, int *signo)
{
	struct epoll_event evs[8];
	sigset_t mask, old;
	int sfd, ep, ret, n, i;
	unsigned int k;
	bool done = false;

	*signo = 0;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, &old);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	ep = m->ep;
	if (ep < 0 || sfd < 0 ||
	    ep_add(ep, vm_stop_fd(m->vm), EPOLLIN, EV_STOP) < 0 ||
	    ep_add(ep, sfd, EPOLLIN, EV_SIGNAL) < 0) {
		vm_stop_detail(m->vm, VM_EXIT_ERROR,
			       "setting up the event loop: %s",
			       strerror(errno));
		goto out;
	}
	/* stdin may be a regular file or /dev/null, which epoll refuses. */
	if (m->stdin_console && ep_add(ep, STDIN_FILENO, EPOLLIN, EV_STDIN) < 0)
		pr_debug("console input not available");
	if (m->nr_nets && ep_add(ep, m->net_wake_efd, EPOLLIN, EV_NET_WAKE) < 0)
		pr_warn("net: cannot watch the wakeup eventfd");
	for (k = 0; k < m->nr_nets; k++) {
		int fd = virtio_net_fd(m->nets[k]);

		virtio_net_set_rx_wakeup(m->nets[k], net_wakeup, m);
		if (fd >= 0 && ep_add(ep, fd, EPOLLIN, EV_NET + k) < 0)
			pr_warn("net %u: cannot watch its back end", k);
	}
	if (m->track_ms) {
		struct itimerspec its = {
			.it_interval = { m->track_ms / 1000,
					 (long)(m->track_ms % 1000) *
						 1000000L },
		};

		its.it_value = its.it_interval;
		m->track_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
		ret = m->track_fd < 0 ? -errno : dirty_start(m->vm);
		if (!ret && (timerfd_settime(m->track_fd, 0, &its, NULL) < 0 ||
			     ep_add(ep, m->track_fd, EPOLLIN, EV_TRACK) < 0))
			ret = -errno;
		if (ret < 0) {
			vm_stop_detail(m->vm, VM_EXIT_ERROR,
				       "starting dirty tracking: %s",
				       strerror(-ret));
			goto out;
		}
	}
	ret = vm_start(m->vm);
	if (ret < 0) {
		vm_stop_detail(m->vm, VM_EXIT_ERROR, "starting vCPUs: %s",
			       strerror(-ret));
		goto out;
	}
	m->loop_sfd = sfd;
	m->loop_signo = signo;
	while (!done) {
		/* With a back end paused, retry every 100 ms regardless. */
		n = epoll_wait(ep, evs, ARRAY_SIZE(evs), m->nr_nets ? 100 : -1);
		if (n < 0 && errno != EINTR)
			break;
		if (n == 0)
			net_rewatch(m, ep);
		for (i = 0; i < n; i++)
			done |= machine_event(m, ep, sfd, evs[i].data.u64,
					      signo);
	}
out:
	m->loop_sfd = -1;
	m->loop_signo = NULL;
	ret = vm_wait(m->vm, -1);
	if (sfd >= 0)
		close(sfd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return (enum vm_exit_reason)ret;
}

bool machine_poll(struct machine *m, int timeout_ms)
{
	struct epoll_event evs[8];
	int n, i;

	if (!m->loop_signo || m->polling)
		return vm_wait(m->vm, 0) != VM_EXIT_NONE;
	m->polling = true;
	n = epoll_wait(m->ep, evs, ARRAY_SIZE(evs), timeout_ms);
	for (i = 0; i < n; i++)
		/* The loop's own end (EV_STOP) waits for the loop. */
		if (evs[i].data.u64 != EV_STOP)
			machine_event(m, m->ep, m->loop_sfd, evs[i].data.u64,
				      m->loop_signo);
	m->polling = false;
	return vm_wait(m->vm, 0) != VM_EXIT_NONE;
}

int machine_watch_fd(struct machine *m, int fd, machine_fd_fn_t fn,
		     void *opaque)
{
	unsigned int w;
	int ret;

	for (w = 0; w < MACHINE_MAX_WATCH && m->watch[w].fd >= 0; w++)
		;
	if (w == MACHINE_MAX_WATCH)
		return -ENOSPC;
	ret = ep_add(m->ep, fd, EPOLLIN, EV_USER + w);
	if (ret < 0)
		return ret;
	m->watch[w].fd = fd;
	m->watch[w].fn = fn;
	m->watch[w].opaque = opaque;
	return 0;
}

void machine_unwatch_fd(struct machine *m, int fd)
{
	unsigned int w;

	for (w = 0; w < MACHINE_MAX_WATCH; w++) {
		if (m->watch[w].fd == fd) {
			epoll_ctl(m->ep, EPOLL_CTL_DEL, fd, NULL);
			m->watch[w].fd = -1;
		}
	}
}

unsigned int machine_announce(struct machine *m)
{
	unsigned int k, sent = 0;

	for (k = 0; k < m->nr_nets; k++) {
		int ret = virtio_net_announce(m->nets[k]);

		if (ret < 0)
			pr_warn("net %u: announcing the guest: %s", k,
				strerror(-ret));
		else
			sent++;
	}
	return sent;
}

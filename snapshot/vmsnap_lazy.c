/* SPDX-License-Identifier: MIT */
/*
 * Lazy restore: the vCPUs run before guest memory is loaded. RAM is
 * registered with userfaultfd (missing mode); one loader thread serves
 * each first touch of a page, by a vCPU through KVM or by a VMM thread,
 * from the newest link of the chain that holds it (the whole batch it is
 * in, read and checked with image_fetch()), and between faults fills the
 * rest batch by batch in file order. Zero pages are never written: a
 * fault on one installs a zero page, and once every data batch is in the
 * range is unregistered, so the memfd's holes read as zero as usual.
 *
 * Each page is installed once (UFFDIO_COPY is atomic and wakes the
 * waiters), by the one thread, so the done bitmap is exact. A batch
 * whose bytes fail their checksum when fetched cannot be completed: the
 * VM is stopped with an error, and faults are then answered with zero
 * pages only so that its threads can leave.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kernel/machine.h"
#include "kernel/mem.h"
#include "kernel/uffd.h"
#include "kernel/util/bitmap.h"
#include "kernel/util/log.h"
#include "kernel/vm.h"
#include "snapshot/image.h"
#include "snapshot/stream.h"
#include "snapshot/vmsnap.h"
#include "snapshot/vmsnap_priv.h"

#define LAZY_PAGE 4096u
/* where[] is a batch's index + 1, or none: never given (zero). */
#define WHERE_NONE 0u

struct lazy_batch {
	uint64_t offset;  /* the section in its link's file */
	uint32_t link;	  /* 0: the newest image */
	uint32_t claimed; /* pages this batch gives (no newer copy does) */
	bool zero;	  /* a zero run: nothing to read */
	bool fetched;	  /* read, or nothing to read */
};

struct vmsnap_lazy {
	uint64_t nr_pages;
	uint32_t *where; /* per page: WHERE_*, or its batch's index + 1 */
	uint64_t *done;	 /* pages installed (or known zero and left) */
	struct lazy_batch *b;
	size_t nr_b, cap_b, next; /* next: the fill's cursor */
	uint64_t data_pages;	  /* pages the batches give, zero runs not */

	/* Set by vmsnap_lazy_start(). */
	struct image *imgs[VMSNAP_MAX_CHAIN];
	struct stream *streams[VMSNAP_MAX_CHAIN];
	unsigned int nr_links;
	struct machine *m;
	uint8_t *ram;
	int uffd, wake_efd;
	bool stop, fill; /* atomics: asked to stop; fill in the background */
	pthread_t thread;
	bool started;
	uint64_t t0;
	vmsnap_lazy_done_t done_cb;
	void *opaque;

	/* The loader thread's, during a fetch. */
	uint32_t cur;  /* index + 1 of the batch being fetched */
	uint64_t gave; /* pages of it installed or found installed */
	bool failed;   /* zero pages only from now on */
	struct vmsnap_lazy_stats st;
	char err[512];

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool complete; /* under lock: RAM is whole, or can never be */
	bool finished; /* under lock: RAM is whole */
};

int vmsnap_lazy_create(uint64_t nr_pages, struct vmsnap_lazy **out)
{
	struct vmsnap_lazy *lz = calloc(1, sizeof(*lz));

	if (!lz)
		return -ENOMEM;
	lz->nr_pages = nr_pages;
	lz->uffd = lz->wake_efd = -1;
	lz->where = calloc(nr_pages ? nr_pages : 1, sizeof(*lz->where));
	lz->done = bitmap_alloc(nr_pages);
	pthread_mutex_init(&lz->lock, NULL);
	pthread_cond_init(&lz->cond, NULL);
	if (!lz->where || !lz->done) {
		vmsnap_lazy_free(lz);
		return -ENOMEM;
	}
	*out = lz;
	return 0;
}

int vmsnap_lazy_add_batch(struct vmsnap_lazy *lz, unsigned int link,
			  const struct image_batch *b)
{
	uint32_t id, claimed = 0;
	size_t i;

	if (b->seg != 0)
		return -EINVAL;
	if (lz->nr_b == lz->cap_b) {
		size_t cap = lz->cap_b ? lz->cap_b * 2 : 1024;
		struct lazy_batch *nb;

		if (cap >= UINT32_MAX - 1)
			return -E2BIG;
		nb = realloc(lz->b, cap * sizeof(*nb));
		if (!nb)
			return -ENOMEM;
		lz->b = nb;
		lz->cap_b = cap;
	}
	id = (uint32_t)lz->nr_b + 1;
	/*
	 * The image layer checked the runs against the segment's size. A
	 * page goes to the newest link that holds it and, within a link
	 * (a live save's rewrites), to its last copy.
	 */
	for (i = 0; i < b->nr_runs; i++) {
		uint64_t p = b->runs[2 * i], end = p + b->runs[2 * i + 1];

		for (; p < end; p++) {
			uint32_t w = lz->where[p];

			if (w != WHERE_NONE && lz->b[w - 1].link != link)
				continue;
			if (w != WHERE_NONE && !--lz->b[w - 1].claimed)
				lz->b[w - 1].fetched = true;
			lz->where[p] = id;
			claimed++;
		}
	}
	lz->b[lz->nr_b] = (struct lazy_batch){ .offset = b->offset,
					       .link = link,
					       .claimed = claimed,
					       .zero = b->zero,
					       .fetched = b->zero || !claimed };
	lz->nr_b++;
	return 0;
}

/* Loading is over: RAM is whole if @whole; wakes whoever waits for it. */
static void lazy_settle(struct vmsnap_lazy *lz, bool whole)
{
	pthread_mutex_lock(&lz->lock);
	lz->complete = true;
	lz->finished = whole;
	pthread_cond_broadcast(&lz->cond);
	pthread_mutex_unlock(&lz->lock);
}

/* Stops the VM for good: its memory cannot be completed. */
static void lazy_fail(struct vmsnap_lazy *lz, const char *fmt, ...)
	__printf(2, 3);

static void lazy_fail(struct vmsnap_lazy *lz, const char *fmt, ...)
{
	va_list ap;

	if (lz->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(lz->err, sizeof(lz->err), fmt, ap);
	va_end(ap);
	lz->failed = true;
	lz->st.error = true;
	lazy_settle(lz, false); /* it never will be whole: waiters learn it */
	pr_err("lazy restore: %s; the guest cannot go on", lz->err);
	vm_stop_detail(machine_vm(lz->m), VM_EXIT_ERROR, "lazy restore: %s",
		       lz->err);
}

/* image_fetch()'s sink: installs the pages this batch gives. */
static int lazy_on_pages(void *opaque, uint32_t seg __unused, uint64_t first,
			 uint64_t nr, const void *data,
			 uint64_t file_off __unused)
{
	struct vmsnap_lazy *lz = opaque;
	const uint8_t *src = data;
	uint64_t p = first, end = first + nr, q;
	size_t existed = 0;
	int ret;

	if (!src)
		return -EBADMSG; /* indexed as data, read back as zero */
	while (p < end) {
		if (lz->where[p] != lz->cur || bitmap_test(lz->done, p)) {
			p++;
			continue;
		}
		for (q = p + 1; q < end && lz->where[q] == lz->cur &&
				!bitmap_test(lz->done, q);
		     q++)
			;
		ret = uffd_copy(lz->uffd, lz->ram + p * LAZY_PAGE,
				src + (p - first) * LAZY_PAGE,
				(q - p) * LAZY_PAGE, &existed);
		if (ret < 0)
			return ret;
		bitmap_set_range_atomic(lz->done, p, q - p);
		lz->gave += q - p;
		p = q;
	}
	lz->st.existed += existed;
	return 0;
}

/* Reads batch @i and installs what it gives; false if it failed. */
static bool lazy_fetch(struct vmsnap_lazy *lz, size_t i)
{
	struct lazy_batch *b = &lz->b[i];
	const struct image_sink sink = { .opaque = lz, .pages = lazy_on_pages };
	int ret;

	b->fetched = true;
	lz->cur = (uint32_t)i + 1;
	lz->gave = 0;
	ret = image_fetch(lz->imgs[b->link], b->offset, &sink);
	if (ret < 0) {
		if (b->link)
			lazy_fail(lz, "base image %u of the chain: %s", b->link,
				  image_error(lz->imgs[b->link]));
		else
			lazy_fail(lz, "the image: %s",
				  image_error(lz->imgs[b->link]));
		return false;
	}
	/* Pages the index gave this batch and it did not hold. */
	if (lz->gave < b->claimed) {
		uint64_t p;

		for (p = 0; p < lz->nr_pages; p++)
			if (lz->where[p] == lz->cur &&
			    !bitmap_test(lz->done, p))
				break;
		if (p < lz->nr_pages) {
			lazy_fail(lz,
				  "link %u, offset %" PRIu64
				  ": the batch no longer holds page %" PRIu64
				  " (the file changed)",
				  b->link, b->offset, p);
			return false;
		}
	}
	lz->st.batches++;
	return true;
}

static void lazy_serve(struct vmsnap_lazy *lz, uint64_t addr)
{
	uint64_t p = (addr - (uintptr_t)lz->ram) / LAZY_PAGE;
	uint32_t w;
	int ret;

	lz->st.faults++;
	if (addr < (uintptr_t)lz->ram || p >= lz->nr_pages ||
	    bitmap_test(lz->done, p))
		return; /* installed since: the install woke it */
	w = lz->failed ? WHERE_NONE : lz->where[p];
	if (w != WHERE_NONE && !lz->b[w - 1].zero && lazy_fetch(lz, w - 1)) {
		__atomic_fetch_add(&lz->st.fault_pages, lz->gave,
				   __ATOMIC_RELAXED);
		return;
	}
	/* Zero, or past a failure: a zero page, so the toucher goes on. */
	ret = uffd_zero(lz->uffd, lz->ram + p * LAZY_PAGE, LAZY_PAGE, NULL);
	if (ret < 0)
		lazy_fail(lz, "installing a zero page: %s", strerror(-ret));
	else
		bitmap_set(lz->done, p);
}

static void lazy_finish(struct vmsnap_lazy *lz)
{
	int ret;

	/* Every data page is in: the memfd's holes are the zero pages. */
	ret = uffd_unregister(lz->uffd, lz->ram, lz->nr_pages * LAZY_PAGE);
	if (ret < 0 && !lz->failed)
		lazy_fail(lz, "unregistering guest memory: %s", strerror(-ret));
	lz->st.ns = vmsnap_now_ns() - lz->t0;
	if (lz->done_cb)
		lz->done_cb(lz->opaque, &lz->st, lz->failed ? lz->err : NULL);
	lazy_settle(lz, !lz->failed);
}

static void *lazy_thread(void *arg)
{
	struct vmsnap_lazy *lz = arg;
	struct pollfd pfd[2] = { { .fd = lz->uffd, .events = POLLIN },
				 { .fd = lz->wake_efd, .events = POLLIN } };
	bool filling;
	uint64_t addr, n;
	int r;

	for (;;) {
		filling = __atomic_load_n(&lz->fill, __ATOMIC_ACQUIRE) &&
			  !lz->failed;
		/* Faults first; the fill goes on only when none waits. */
		r = poll(pfd, 2, filling ? 0 : -1);
		if (r < 0 && errno != EINTR) {
			lazy_fail(lz, "poll: %s", strerror(errno));
			break;
		}
		if (r > 0 && pfd[1].revents &&
		    read(lz->wake_efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
			pr_warn("lazy restore: eventfd: %s", strerror(errno));
		if (__atomic_load_n(&lz->stop, __ATOMIC_ACQUIRE))
			break;
		while ((r = uffd_next_fault(lz->uffd, &addr)) == 1)
			lazy_serve(lz, addr);
		if (r < 0) {
			lazy_fail(lz, "reading faults: %s", strerror(-r));
			break;
		}
		if (!filling)
			continue;
		while (lz->next < lz->nr_b && lz->b[lz->next].fetched)
			lz->next++;
		if (lz->next < lz->nr_b && !lz->failed) {
			if (lazy_fetch(lz, lz->next))
				__atomic_fetch_add(&lz->st.fill_pages, lz->gave,
						   __ATOMIC_RELAXED);
			continue;
		}
		if (lz->failed)
			continue; /* serve zeros until the VM is gone */
		lazy_finish(lz);
		return NULL;
	}
	/* Stopped (the machine is going) or broken: nobody waits any more. */
	lz->st.ns = vmsnap_now_ns() - lz->t0;
	lazy_settle(lz, false);
	return NULL;
}

static void lazy_wake(struct vmsnap_lazy *lz)
{
	uint64_t one = 1;

	if (write(lz->wake_efd, &one, sizeof(one)) != sizeof(one))
		pr_warn("lazy restore: waking the loader: %s", strerror(errno));
}

/* Whoever needs all of memory (a save) has the fill run, and waits. */
static int lazy_wait(void *opaque)
{
	struct vmsnap_lazy *lz = opaque;
	bool failed;

	if (!__atomic_exchange_n(&lz->fill, true, __ATOMIC_ACQ_REL))
		lazy_wake(lz);
	pthread_mutex_lock(&lz->lock);
	while (!lz->complete)
		pthread_cond_wait(&lz->cond, &lz->lock);
	failed = !lz->finished;
	pthread_mutex_unlock(&lz->lock);
	return failed ? -EIO : 0;
}

static bool lazy_progress(void *opaque, uint64_t *done, uint64_t *total)
{
	struct vmsnap_lazy *lz = opaque;
	bool loading;

	pthread_mutex_lock(&lz->lock);
	loading = !lz->complete;
	pthread_mutex_unlock(&lz->lock);
	/* The loader's counters, read as they are (one writer, 64 bits). */
	*done = __atomic_load_n(&lz->st.fault_pages, __ATOMIC_RELAXED) +
		__atomic_load_n(&lz->st.fill_pages, __ATOMIC_RELAXED);
	*total = lz->data_pages;
	return loading;
}

static void lazy_release(void *opaque)
{
	vmsnap_lazy_free(opaque);
}

int vmsnap_lazy_start(struct vmsnap_lazy *lz, struct machine *m,
		      struct image **imgs, struct stream **streams,
		      unsigned int nr_links, bool fill, vmsnap_lazy_done_t done,
		      void *opaque, char *err, size_t errlen)
{
	struct mem_seg *ram = machine_ram(m);
	const struct machine_loader ldr = { .wait = lazy_wait,
					    .progress = lazy_progress,
					    .release = lazy_release,
					    .opaque = lz };
	size_t i;
	int ret;

	if (mem_seg_pages(ram) != lz->nr_pages || nr_links > VMSNAP_MAX_CHAIN)
		return err_printf(err, errlen, -EINVAL,
				  "lazy restore: the RAM is not the image's");
	lz->m = m;
	lz->ram = mem_seg_hva_load(ram);
	for (i = 0; i < lz->nr_b; i++)
		if (!lz->b[i].zero)
			lz->data_pages += lz->b[i].claimed;
	lz->done_cb = done;
	lz->opaque = opaque;
	lz->t0 = vmsnap_now_ns();
	ret = uffd_open(&lz->uffd);
	if (ret < 0)
		return err_printf(
			err, errlen, ret,
			"lazy restore needs userfaultfd for shared memory: %s",
			strerror(-ret));
	lz->fill = fill;
	lz->wake_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (lz->wake_efd < 0)
		return err_printf(err, errlen, -errno, "eventfd: %s",
				  strerror(errno));
	ret = uffd_register(lz->uffd, lz->ram, lz->nr_pages * LAZY_PAGE);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "lazy restore: registering guest memory: %s",
				  strerror(-ret));
	/* The thread reads them from its first step. */
	memcpy(lz->imgs, imgs, nr_links * sizeof(*imgs));
	memcpy(lz->streams, streams, nr_links * sizeof(*streams));
	lz->nr_links = nr_links;
	ret = -pthread_create(&lz->thread, NULL, lazy_thread, lz);
	if (ret < 0) {
		lz->nr_links = 0; /* still the caller's */
		/* Nothing waits yet: memory is as it was, all holes. */
		if (uffd_unregister(lz->uffd, lz->ram,
				    lz->nr_pages * LAZY_PAGE) < 0)
			pr_warn("lazy restore: unregister failed");
		return err_printf(err, errlen, ret, "pthread_create: %s",
				  strerror(-ret));
	}
	lz->started = true;
	/* From here the machine owns @lz and frees it when it goes. */
	machine_set_loader(m, &ldr);
	return 0;
}

void vmsnap_lazy_free(struct vmsnap_lazy *lz)
{
	unsigned int i;

	if (!lz)
		return;
	if (lz->started) {
		__atomic_store_n(&lz->stop, true, __ATOMIC_RELEASE);
		lazy_wake(lz);
		pthread_join(lz->thread, NULL);
	}
	for (i = 0; i < lz->nr_links; i++) {
		image_destroy(lz->imgs[i]);
		stream_close(lz->streams[i]);
	}
	if (lz->uffd >= 0)
		close(lz->uffd);
	if (lz->wake_efd >= 0)
		close(lz->wake_efd);
	pthread_mutex_destroy(&lz->lock);
	pthread_cond_destroy(&lz->cond);
	free(lz->where);
	bitmap_free(lz->done);
	free(lz->b);
	free(lz);
}

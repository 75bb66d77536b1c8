/* SPDX-License-Identifier: MIT */
#include "kernel/dev/virtio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <linux/virtio_ids.h>

#include "kernel/dev/dev.h"
#include "kernel/dev/virtio_mmio.h"
#include "kernel/util/log.h"

/*
 * virtio-rng (entropy device): one request queue whose writable buffers
 * are filled from getrandom(), at most RNG_MAX_CHUNK bytes per buffer so
 * a guest cannot keep a vCPU thread busy with one huge request.
 */

#define RNG_QUEUE_MAX 64
#define RNG_MAX_CHUNK (64 * 1024)

struct virtio_rng {
	struct virtio_mmio t;	  /* first: holds struct dev */
	struct virtq_chain chain; /* [t] scratch */
};

static struct virtio_rng *to_rng(struct virtio_mmio *t)
{
	return container_of(t, struct virtio_rng, t);
}

static int fill_random(uint8_t *p, size_t len)
{
	while (len) {
		ssize_t r = getrandom(p, len, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		p += r;
		len -= r;
	}
	return 0;
}

/*
 * Fills the writable part of @c (up to RNG_MAX_CHUNK bytes) in place.
 * Returns the bytes written, or -errno (-EFAULT breaks the queue).
 */
static int rng_fill(struct virtq *vq, const struct virtq_chain *c)
{
	uint32_t left = MIN(c->wr_len, (uint32_t)RNG_MAX_CHUNK), done = 0;
	unsigned int i;
	int ret;

	for (i = c->nr_ro; i < c->nr && left; i++) {
		uint32_t n = MIN(c->seg[i].len, left);
		uint8_t *p = virtq_dma_begin(vq, c->seg[i].gpa, n);

		if (!p)
			return virtq_fail(vq, -EFAULT, "rng buffer vanished");
		ret = fill_random(p, n);
		virtq_dma_done(vq, c->seg[i].gpa, n);
		if (ret) {
			pr_warn("virtio-rng: getrandom: %s", strerror(-ret));
			return done;
		}
		done += n;
		left -= n;
	}
	return done;
}

static void rng_notify(struct virtio_mmio *t, unsigned int q)
{
	struct virtio_rng *r = to_rng(t);
	struct virtq *vq = &t->vq[q];
	int ret;

	do {
		while (!(ret = virtq_pop(vq, &r->chain))) {
			ret = rng_fill(vq, &r->chain);
			if (ret < 0)
				return;
			if (virtq_push(vq, r->chain.head, ret))
				return;
		}
		if (ret != -EAGAIN)
			return;
	} while (virtq_rearm(vq));
	virtio_mmio_signal(t, vq);
}

static const struct virtio_mmio_ops rng_mmio_ops = {
	.device_id = VIRTIO_ID_RNG,
	.nr_queues = 1,
	.queue_max = RNG_QUEUE_MAX,
	.notify = rng_notify,
};

int virtio_rng_create_mmio(const struct virtio_mmio_conf *mc, struct dev **out)
{
	struct virtio_rng *r = calloc(1, sizeof(*r));
	int ret;

	if (!r)
		return -ENOMEM;
	ret = virtio_mmio_init(&r->t, mc, &rng_mmio_ops);
	if (ret)
		goto err_free;
	r->t.dev.ops = &virtio_rng_dev_ops;
	r->t.dev.vm = mc->vm;
	*out = &r->t.dev;
	return 0;

err_free:
	free(r);
	return ret;
}

int virtio_rng_create(struct vm *vm, uint64_t mmio_base, uint32_t gsi,
		      struct dev **out)
{
	struct virtio_mmio_conf mc = {
		.vm = vm,
		.base = mmio_base,
		.gsi = gsi,
	};

	return virtio_rng_create_mmio(&mc, out);
}

static int rng_init(struct vm *vm, const char *conf, struct dev **out)
{
	struct virtio_mmio_conf mc;
	int ret;

	ret = virtio_conf_mmio(vm, conf, &mc);
	if (ret)
		return ret;
	return virtio_rng_create_mmio(&mc, out);
}

static void rng_fini(struct dev *dev)
{
	struct virtio_rng *r = to_rng(virtio_mmio_from_dev(dev));

	virtio_mmio_fini(&r->t);
	free(r);
}

const struct dev_ops virtio_rng_dev_ops = {
	.name = "virtio-rng",
	.state_type = "vmrun.VirtioMmioState",
	.init = rng_init,
	.fini = rng_fini,
	.reset = virtio_mmio_dev_reset,
	.pause = virtio_mmio_dev_pause,
	.resume = virtio_mmio_dev_resume,
	.save = virtio_mmio_dev_save,
	.load = virtio_mmio_dev_load,
};

/* SPDX-License-Identifier: MIT */
/* The virtio-mmio transport and split virtqueues (see virtio.h). */
#include "virtio.h"

#define VQ_TIMEOUT REF_HZ

static uint32_t rd(struct vdev *d, unsigned int reg)
{
	return mmio_read32(d->base + reg);
}

static void wr(struct vdev *d, unsigned int reg, uint32_t v)
{
	mmio_write32(d->base + reg, v);
}

const char *vdev_init(struct vdev *d, uint64_t base, uint32_t want_id,
		      uint64_t features)
{
	uint32_t version, id, lo, hi;
	uint64_t offered;

	d->base = base;
	if (rd(d, VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC)
		return "no-magic";
	version = rd(d, VIRTIO_MMIO_VERSION);
	if (version != 2)
		return version == 1 ? "legacy-version-1" : "bad-version";
	id = rd(d, VIRTIO_MMIO_DEVICE_ID);
	if (!id)
		return "no-device";
	if (id != want_id)
		return "other-device-id";

	wr(d, VIRTIO_MMIO_STATUS, 0);
	if (rd(d, VIRTIO_MMIO_STATUS))
		return "reset-failed";
	wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACK);
	wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER);
	wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	hi = rd(d, VIRTIO_MMIO_DEVICE_FEATURES);
	wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	lo = rd(d, VIRTIO_MMIO_DEVICE_FEATURES);
	offered = (uint64_t)hi << 32 | lo;
	if (!(offered & VIRTIO_F_VERSION_1)) {
		vdev_failed(d);
		return "no-version-1-feature";
	}
	d->features = offered & (features | VIRTIO_F_VERSION_1);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)d->features);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(d->features >> 32));
	wr(d, VIRTIO_MMIO_STATUS,
	   VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER |
		   VIRTIO_STATUS_FEATURES_OK);
	if (!(rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
		vdev_failed(d);
		return "features-refused";
	}
	return NULL;
}

const char *vq_init(struct vdev *d, struct virtq *q, uint32_t index)
{
	uint64_t desc = (uint64_t)q->desc, avail = (uint64_t)&q->avail;
	uint64_t used = (uint64_t)&q->used;
	uint32_t max;
	uint16_t size = VIRTQ_SIZE;

	wr(d, VIRTIO_MMIO_QUEUE_SEL, index);
	if (rd(d, VIRTIO_MMIO_QUEUE_READY)) {
		vdev_failed(d);
		return "queue-in-use";
	}
	max = rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (!max) {
		vdev_failed(d);
		return "no-queue";
	}
	while (size > max)
		size >>= 1;
	memset(q, 0, sizeof(*q));
	q->size = size;
	q->index = index;
	q->avail.flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	wr(d, VIRTIO_MMIO_QUEUE_NUM, size);
	wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	wr(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
	wr(d, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
	wr(d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
	wr(d, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
	wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
	return NULL;
}

void vdev_driver_ok(struct vdev *d)
{
	wr(d, VIRTIO_MMIO_STATUS,
	   VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER |
		   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

void vdev_failed(struct vdev *d)
{
	wr(d, VIRTIO_MMIO_STATUS,
	   rd(d, VIRTIO_MMIO_STATUS) | VIRTIO_STATUS_FAILED);
}

uint8_t vdev_config8(struct vdev *d, unsigned int off)
{
	return mmio_read8(d->base + VIRTIO_MMIO_CONFIG + off);
}

uint32_t vdev_config32(struct vdev *d, unsigned int off)
{
	return rd(d, VIRTIO_MMIO_CONFIG + off);
}

void vq_desc(struct virtq *q, uint16_t i, const void *addr, uint32_t len,
	     uint16_t flags, uint16_t next)
{
	q->desc[i].addr = (uint64_t)addr;
	q->desc[i].len = len;
	q->desc[i].flags = flags;
	q->desc[i].next = next;
}

void vq_post(struct virtq *q, uint16_t head)
{
	uint16_t idx = q->avail.idx;

	q->avail.ring[idx & (q->size - 1)] = head;
	/* The device must see the entry (and descriptors) before idx. */
	barrier();
	__atomic_store_n(&q->avail.idx, (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

void vq_notify(struct vdev *d, struct virtq *q)
{
	mb();
	wr(d, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

bool vq_get(struct virtq *q, uint32_t *id, uint32_t *len)
{
	uint16_t at = q->last_used & (q->size - 1);

	if (__atomic_load_n(&q->used.idx, __ATOMIC_ACQUIRE) == q->last_used)
		return false;
	*id = q->used.ring[at].id;
	*len = q->used.ring[at].len;
	q->last_used++;
	return true;
}

bool vq_wait(struct virtq *q, uint32_t *id, uint32_t *len)
{
	uint64_t until = jiffies + VQ_TIMEOUT;

	while (!vq_get(q, id, len)) {
		if ((int64_t)(jiffies - until) > 0)
			return false;
		cpu_relax();
	}
	return true;
}

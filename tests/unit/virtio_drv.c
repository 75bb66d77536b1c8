/* SPDX-License-Identifier: MIT */
#include "tests/unit/virtio_drv.h"

#include <assert.h>
#include <endian.h>
#include <stdlib.h>
#include <string.h>
#include <linux/virtio_mmio.h>

#include "kernel/dev/virtio_mmio.h"

void drv_mem_init(struct drv_mem *m)
{
	memset(m, 0, sizeof(*m));
	m->flat.buf = aligned_alloc(PAGE_SIZE, DRV_MEM_SIZE);
	m->flat.dirty = calloc(DRV_MEM_SIZE / PAGE_SIZE, 1);
	assert(m->flat.buf && m->flat.dirty);
	memset(m->flat.buf, 0, DRV_MEM_SIZE);
	m->flat.base = DRV_MEM_BASE;
	m->flat.size = DRV_MEM_SIZE;
	m->next = DRV_MEM_BASE;
	virtq_mem_init_flat(&m->mem, &m->flat);
}

void drv_mem_fini(struct drv_mem *m)
{
	free(m->flat.buf);
	free(m->flat.dirty);
	memset(m, 0, sizeof(*m));
}

uint64_t drv_alloc(struct drv_mem *m, size_t len, size_t align)
{
	uint64_t gpa = ALIGN_UP(m->next, (uint64_t)align);

	assert(gpa + len <= DRV_MEM_BASE + DRV_MEM_SIZE);
	m->next = gpa + len;
	memset(drv_ptr(m, gpa), 0, len);
	return gpa;
}

void *drv_ptr(struct drv_mem *m, uint64_t gpa)
{
	assert(gpa >= DRV_MEM_BASE && gpa < DRV_MEM_BASE + DRV_MEM_SIZE);
	return m->flat.buf + (gpa - DRV_MEM_BASE);
}

bool drv_dirty(struct drv_mem *m, uint64_t gpa)
{
	return m->flat.dirty[(gpa - DRV_MEM_BASE) >> PAGE_SHIFT];
}

void drv_clear_dirty(struct drv_mem *m)
{
	memset(m->flat.dirty, 0, DRV_MEM_SIZE / PAGE_SIZE);
}

static void put16(struct drv_mem *m, uint64_t gpa, uint16_t v)
{
	v = htole16(v);
	memcpy(drv_ptr(m, gpa), &v, 2);
}

static uint16_t get16(struct drv_mem *m, uint64_t gpa)
{
	uint16_t v;

	memcpy(&v, drv_ptr(m, gpa), 2);
	return le16toh(v);
}

static uint32_t get32(struct drv_mem *m, uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, drv_ptr(m, gpa), 4);
	return le32toh(v);
}

void drv_queue_init(struct drv_queue *q, struct drv_mem *m, uint16_t size)
{
	memset(q, 0, sizeof(*q));
	q->m = m;
	q->size = size;
	q->desc = drv_alloc(m, 16ULL * size, 16);
	q->avail = drv_alloc(m, 6 + 2ULL * size, 2);
	q->used = drv_alloc(m, 6 + 8ULL * size, 4);
}

void drv_set_table(struct drv_mem *m, uint64_t table, uint16_t i, uint64_t addr,
		   uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *p = drv_ptr(m, table + 16ULL * i);
	uint64_t a = htole64(addr);
	uint32_t l = htole32(len);
	uint16_t f = htole16(flags), n = htole16(next);

	memcpy(p, &a, 8);
	memcpy(p + 8, &l, 4);
	memcpy(p + 12, &f, 2);
	memcpy(p + 14, &n, 2);
}

void drv_set_desc(struct drv_queue *q, uint16_t i, uint64_t addr, uint32_t len,
		  uint16_t flags, uint16_t next)
{
	drv_set_table(q->m, q->desc, i, addr, len, flags, next);
}

void drv_set_avail_idx(struct drv_queue *q, uint16_t idx)
{
	put16(q->m, q->avail + 2, idx);
}

void drv_publish(struct drv_queue *q, uint16_t head)
{
	put16(q->m, q->avail + 4 + 2ULL * (q->avail_idx % q->size), head);
	q->avail_idx++;
	drv_set_avail_idx(q, q->avail_idx);
}

uint16_t drv_add(struct drv_queue *q, const struct drv_buf *bufs,
		 unsigned int n)
{
	uint16_t head = q->next_desc % q->size, i = head;
	unsigned int k;

	for (k = 0; k < n; k++) {
		uint16_t next = (i + 1) % q->size;
		uint16_t flags = (bufs[k].write ? VIRTQ_DESC_F_WRITE : 0) |
				 (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0);

		drv_set_desc(q, i, bufs[k].gpa, bufs[k].len, flags, next);
		i = next;
	}
	q->next_desc = i;
	drv_publish(q, head);
	return head;
}

bool drv_get_used(struct drv_queue *q, uint32_t *id, uint32_t *len)
{
	uint64_t e;

	if (drv_used_idx(q) == q->last_used)
		return false;
	e = q->used + 4 + 8ULL * (q->last_used % q->size);
	*id = get32(q->m, e);
	*len = get32(q->m, e + 4);
	q->last_used++;
	return true;
}

uint16_t drv_used_idx(struct drv_queue *q)
{
	return get16(q->m, q->used + 2);
}

uint16_t drv_avail_event(struct drv_queue *q)
{
	return get16(q->m, q->used + 4 + 8ULL * q->size);
}

void drv_set_used_event(struct drv_queue *q, uint16_t v)
{
	put16(q->m, q->avail + 4 + 2ULL * q->size, v);
}

void drv_set_avail_flags(struct drv_queue *q, uint16_t v)
{
	put16(q->m, q->avail, v);
}

int drv_virtq(struct drv_queue *q, struct virtq *vq, uint64_t features)
{
	virtq_reset(vq);
	vq->s.size = q->size;
	vq->s.desc = q->desc;
	vq->s.avail = q->avail;
	vq->s.used = q->used;
	return virtq_enable(vq, features, VIRTQ_MAX_SIZE);
}

int drv_irq_fn(void *opaque, uint32_t gsi __unused, bool level)
{
	struct drv_irq *irq = opaque;

	if (level && !irq->level)
		irq->raises++;
	irq->level = level;
	return 0;
}

void drv_mmio_conf(struct virtio_mmio_conf *mc, struct drv_mem *m,
		   struct drv_irq *irq)
{
	memset(mc, 0, sizeof(*mc));
	memset(irq, 0, sizeof(*irq));
	mc->base = 0xd0000000;
	mc->gsi = 5;
	mc->mem = &m->mem;
	mc->irq = drv_irq_fn;
	mc->irq_opaque = irq;
}

uint32_t drv_read32(struct virtio_mmio *t, uint32_t off)
{
	uint32_t v;

	virtio_mmio_access(t, off, &v, 4, false);
	return le32toh(v);
}

void drv_write32(struct virtio_mmio *t, uint32_t off, uint32_t v)
{
	v = htole32(v);
	virtio_mmio_access(t, off, &v, 4, true);
}

uint32_t drv_mmio_setup(struct virtio_mmio *t, struct drv_queue *qs,
			unsigned int n, uint64_t want)
{
	uint32_t st = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
	uint64_t f;
	unsigned int i;

	drv_write32(t, VIRTIO_MMIO_STATUS, 0);
	drv_write32(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	drv_write32(t, VIRTIO_MMIO_STATUS, st);
	drv_write32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	f = drv_read32(t, VIRTIO_MMIO_DEVICE_FEATURES);
	drv_write32(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	f |= (uint64_t)drv_read32(t, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	f &= want;
	drv_write32(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	drv_write32(t, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	drv_write32(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	drv_write32(t, VIRTIO_MMIO_DRIVER_FEATURES, f >> 32);
	st |= VIRTIO_CONFIG_S_FEATURES_OK;
	drv_write32(t, VIRTIO_MMIO_STATUS, st);
	for (i = 0; i < n; i++) {
		drv_write32(t, VIRTIO_MMIO_QUEUE_SEL, i);
		drv_write32(t, VIRTIO_MMIO_QUEUE_NUM, qs[i].size);
		drv_write32(t, VIRTIO_MMIO_QUEUE_DESC_LOW,
			    (uint32_t)qs[i].desc);
		drv_write32(t, VIRTIO_MMIO_QUEUE_DESC_HIGH, qs[i].desc >> 32);
		drv_write32(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW,
			    (uint32_t)qs[i].avail);
		drv_write32(t, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, qs[i].avail >> 32);
		drv_write32(t, VIRTIO_MMIO_QUEUE_USED_LOW,
			    (uint32_t)qs[i].used);
		drv_write32(t, VIRTIO_MMIO_QUEUE_USED_HIGH, qs[i].used >> 32);
		drv_write32(t, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	st |= VIRTIO_CONFIG_S_DRIVER_OK;
	drv_write32(t, VIRTIO_MMIO_STATUS, st);
	return drv_read32(t, VIRTIO_MMIO_STATUS);
}

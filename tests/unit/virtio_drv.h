/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_UNIT_VIRTIO_DRV_H
#define VMM_TESTS_UNIT_VIRTIO_DRV_H

/*
 * A minimal guest-side virtio driver for unit tests: flat "guest memory"
 * (struct virtq_flat_mem), split rings laid out in it, and the
 * virtio-mmio register sequence, so the device code can be driven with no
 * VM and no /dev/kvm.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/dev/virtq.h"

struct virtio_mmio;
struct virtio_mmio_conf;

#define DRV_MEM_BASE 0x100000ULL
#define DRV_MEM_SIZE (2 * SZ_1M)

struct drv_mem {
	struct virtq_flat_mem flat;
	struct virtq_mem mem;
	uint64_t next; /* bump allocator, guest-physical */
};

void drv_mem_init(struct drv_mem *m);
void drv_mem_fini(struct drv_mem *m);
/* Allocates zeroed guest memory; returns its guest-physical address. */
uint64_t drv_alloc(struct drv_mem *m, size_t len, size_t align);
/* Host pointer to guest-physical @gpa (which must be inside). */
void *drv_ptr(struct drv_mem *m, uint64_t gpa);
bool drv_dirty(struct drv_mem *m, uint64_t gpa);
void drv_clear_dirty(struct drv_mem *m);

struct drv_queue {
	struct drv_mem *m;
	uint16_t size;
	uint64_t desc, avail, used;
	uint16_t avail_idx; /* driver's shadow of avail->idx */
	uint16_t last_used; /* next used entry the driver reads */
	uint16_t next_desc; /* bump allocator over the table */
};

struct drv_buf {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

void drv_queue_init(struct drv_queue *q, struct drv_mem *m, uint16_t size);
void drv_set_desc(struct drv_queue *q, uint16_t i, uint64_t addr, uint32_t len,
		  uint16_t flags, uint16_t next);
/* Writes an entry of an indirect table at @table. */
void drv_set_table(struct drv_mem *m, uint64_t table, uint16_t i, uint64_t addr,
		   uint32_t len, uint16_t flags, uint16_t next);
/* Puts @head in the avail ring and bumps avail->idx. */
void drv_publish(struct drv_queue *q, uint16_t head);
/* Writes avail->idx directly (to simulate a racing/hostile driver). */
void drv_set_avail_idx(struct drv_queue *q, uint16_t idx);
/* Chains @n buffers in fresh descriptors and publishes; returns head. */
uint16_t drv_add(struct drv_queue *q, const struct drv_buf *bufs,
		 unsigned int n);
/* Takes the next used element, if any. */
bool drv_get_used(struct drv_queue *q, uint32_t *id, uint32_t *len);
uint16_t drv_used_idx(struct drv_queue *q);
uint16_t drv_avail_event(struct drv_queue *q);
void drv_set_used_event(struct drv_queue *q, uint16_t v);
void drv_set_avail_flags(struct drv_queue *q, uint16_t v);

/* Wires a host-side struct virtq straight onto @q and enables it. */
int drv_virtq(struct drv_queue *q, struct virtq *vq, uint64_t features);

/* Interrupt line recorder for struct virtio_mmio_conf.irq. */
struct drv_irq {
	bool level;
	unsigned int raises;
};
int drv_irq_fn(void *opaque, uint32_t gsi, bool level);
void drv_mmio_conf(struct virtio_mmio_conf *mc, struct drv_mem *m,
		   struct drv_irq *irq);

uint32_t drv_read32(struct virtio_mmio *t, uint32_t off);
void drv_write32(struct virtio_mmio *t, uint32_t off, uint32_t v);

/*
 * The driver init sequence (virtio 1.x 3.1.1): reset, ACKNOWLEDGE,
 * DRIVER, features (the offered ones & @want), FEATURES_OK, queues
 * @qs[0..n) set up and ready, DRIVER_OK. Returns the final status read
 * back.
 */
uint32_t drv_mmio_setup(struct virtio_mmio *t, struct drv_queue *qs,
			unsigned int n, uint64_t want);

#endif /* VMM_TESTS_UNIT_VIRTIO_DRV_H */

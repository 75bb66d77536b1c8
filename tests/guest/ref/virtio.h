/* SPDX-License-Identifier: MIT */
#ifndef VMM_REF_VIRTIO_H
#define VMM_REF_VIRTIO_H

/*
 * A minimal virtio-mmio (version 2, "modern") transport with split
 * virtqueues, driven from ring 3 by polling: register accesses are MMIO
 * exits, rings are plain memory. Interrupts stay off (the queues ask for
 * none and the PIC line stays masked).
 */

#include "ref.h"

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */

/* Register offsets. */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LOW 0x090
#define VIRTIO_MMIO_QUEUE_AVAIL_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_USED_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_USED_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG 0x100

/* Device status bits. */
#define VIRTIO_STATUS_ACK 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_FAILED 128

#define VIRTIO_F_VERSION_1 (1ULL << 32)

#define VIRTQ_SIZE 16
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

/* One split virtqueue in one page, and the driver's view of it. */
struct virtq {
	struct virtq_desc desc[VIRTQ_SIZE];
	struct {
		uint16_t flags;
		uint16_t idx;
		uint16_t ring[VIRTQ_SIZE];
		uint16_t used_event;
	} avail __attribute__((aligned(64)));
	struct {
		uint16_t flags;
		uint16_t idx;
		struct virtq_used_elem ring[VIRTQ_SIZE];
		uint16_t avail_event;
	} used __attribute__((aligned(64)));
	uint16_t size;
	uint16_t last_used;
	uint32_t index;
} __attribute__((aligned(4096)));

struct vdev {
	uint64_t base;
	uint64_t features; /* negotiated */
};

/*
 * Checks the window at @base (magic, version 2, device id @want_id),
 * resets the device and negotiates VIRTIO_F_VERSION_1 plus whatever of
 * @features it offers. Returns NULL, or a one-word reason for the console.
 */
const char *vdev_init(struct vdev *d, uint64_t base, uint32_t want_id,
		      uint64_t features);
/* Sets queue @index up over @q. Returns NULL or a reason. */
const char *vq_init(struct vdev *d, struct virtq *q, uint32_t index);
void vdev_driver_ok(struct vdev *d);
void vdev_failed(struct vdev *d);
uint8_t vdev_config8(struct vdev *d, unsigned int off);
uint32_t vdev_config32(struct vdev *d, unsigned int off);

/* Sets descriptor @i. */
void vq_desc(struct virtq *q, uint16_t i, const void *addr, uint32_t len,
	     uint16_t flags, uint16_t next);
/* Makes the chain starting at @head available (no notification). */
void vq_post(struct virtq *q, uint16_t head);
void vq_notify(struct vdev *d, struct virtq *q);
/* Takes one used element if there is one. */
bool vq_get(struct virtq *q, uint32_t *id, uint32_t *len);
/* Polls for one used element for up to a second. */
bool vq_wait(struct virtq *q, uint32_t *id, uint32_t *len);

#endif /* VMM_REF_VIRTIO_H */

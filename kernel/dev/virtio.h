/* SPDX-License-Identifier: MIT */
#ifndef VMM_DEV_VIRTIO_H
#define VMM_DEV_VIRTIO_H

/*
 * Public constructors of the virtio-mmio devices. Each device is also a
 * const struct dev_ops for dev_table.c, whose init() takes a conf string
 * of comma-separated key=value pairs:
 *   virtio-blk: base=ADDR,gsi=N,path=IMAGE
 *   virtio-rng: base=ADDR,gsi=N
 *   virtio-net: base=ADDR,gsi=N,{tap=IFNAME|fd=N}[,mac=xx:xx:xx:xx:xx:xx]
 * Destroy a device with dev->ops->fini(dev).
 *
 * The *_create_mmio() variants take a full struct virtio_mmio_conf, which
 * can describe a device with no VM (flat guest memory, an irq callback)
 * for unit tests and fuzzers.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kernel/util/compiler.h"

struct vm;
struct dev;
struct iovec;
struct virtio_mmio_conf;

extern const struct dev_ops virtio_blk_dev_ops;
extern const struct dev_ops virtio_rng_dev_ops;
extern const struct dev_ops virtio_net_dev_ops;

/*
 * virtio-blk over a raw image file (or block device) at @path, opened
 * read-write, or read-only (VIRTIO_BLK_F_RO) if that is refused. The
 * capacity is the file size in 512-byte sectors, rounded down.
 */
int virtio_blk_create(struct vm *vm, uint64_t mmio_base, uint32_t gsi,
		      const char *path, struct dev **out) __must_check;
int virtio_blk_create_mmio(const struct virtio_mmio_conf *mc,
			   const char *path, struct dev **out) __must_check;

/* virtio-rng: fills the driver's buffers from getrandom(). */
int virtio_rng_create(struct vm *vm, uint64_t mmio_base, uint32_t gsi,
		      struct dev **out) __must_check;
int virtio_rng_create_mmio(const struct virtio_mmio_conf *mc,
			   struct dev **out) __must_check;

/*
 * A virtio-net back end: a source and sink of Ethernet frames. With
 * @hdr_len 12, every frame is preceded by a struct virtio_net_hdr_v1
 * (the tap's IFF_VNET_HDR); with 0, frames are bare.
 *   send: one frame gathered from @iov; 0, or -errno (-EAGAIN: full,
 *         the frame is dropped)
 *   recv: one frame into @buf; its length, or -EAGAIN if none is ready
 *   fd:   what the event loop polls for readability
 *   close: releases the back end
 */
struct virtio_net_backend_ops {
	const char *name;
	uint32_t hdr_len;
	int (*send)(void *be, const struct iovec *iov, int iovcnt);
	ssize_t (*recv)(void *be, void *buf, size_t len);
	int (*fd)(void *be);
	void (*close)(void *be);
};

/*
 * Exactly one back end:
 *   @tap:   name of an existing tap interface (created and bridged
 *           elsewhere), opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
 *   @fd:    (>= 0) a connected datagram socket, such as one end of
 *           socketpair(AF_UNIX, SOCK_SEQPACKET); it is duplicated, the
 *           caller keeps its own. Each guest frame becomes one message
 *           and each message received becomes one guest frame.
 *   @be_ops/@be: a custom back end, owned by the device from then on
 * @mac is the address reported in config space.
 */
struct virtio_net_conf {
	const char *tap;
	int fd;
	const struct virtio_net_backend_ops *be_ops;
	void *be;
	uint8_t mac[6];
};

int virtio_net_create(struct vm *vm, uint64_t mmio_base, uint32_t gsi,
		      const struct virtio_net_conf *nc,
		      struct dev **out) __must_check;
int virtio_net_create_mmio(const struct virtio_mmio_conf *mc,
			   const struct virtio_net_conf *nc,
			   struct dev **out) __must_check;

/* The back end's fd, for the event loop (-1 if it has none). */
int virtio_net_fd(struct dev *dev);

/*
 * Moves frames from the back end into the guest's receive queue; call it
 * when virtio_net_fd() is readable. Returns the number of frames
 * delivered, or -ENOBUFS when a frame is waiting but the guest has posted
 * no receive buffer: the device delivers it itself (and keeps draining
 * the fd) when the guest kicks the receive queue, so an edge-triggered
 * (EPOLLET) watch on the fd is enough. Returns 0 if the driver is not up
 * or the device is paused.
 */
int virtio_net_rx_poll(struct dev *dev);

#endif /* VMM_DEV_VIRTIO_H */

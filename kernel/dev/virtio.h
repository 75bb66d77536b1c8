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
int virtio_blk_create_mmio(const struct virtio_mmio_conf *mc, const char *path,
			   struct dev **out) __must_check;

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

/* Sends a RARP announcement of the card's MAC on its back end (after a
 * migration). 0 or -errno. */
int virtio_net_announce(struct dev *dev);

/* Frames virtio_net_rx_poll() takes from the back end per call, at most. */
#define VIRTIO_NET_RX_BUDGET 64

/*
 * Moves frames from the back end into the guest's receive queue; the
 * VMM's event loop calls it when virtio_net_fd() is readable (poll it
 * level-triggered). Returns the number of frames taken from the back end
 * (delivered, or dropped when too large for the buffer offered), at most
 * VIRTIO_NET_RX_BUDGET per call; the fd stays readable if more wait, so
 * the loop simply calls again. Returns 0 if the driver is not up or the
 * device is paused.
 *
 * -ENOBUFS means a frame is waiting but the guest has posted no receive
 * buffer: stop watching the fd. When the guest then kicks the receive
 * queue, the device delivers what it can itself (in the vCPU thread) and
 * calls the wakeup set with virtio_net_set_rx_wakeup(), after which the
 * loop watches the fd again. Any other -errno is a back-end failure (such
 * as -ENOTCONN once the peer of a SOCK_SEQPACKET socket has closed): stop
 * watching the fd.
 */
int virtio_net_rx_poll(struct dev *dev);

/*
 * Sets the callback for the -ENOBUFS case above (NULL to clear). It runs
 * in a vCPU thread with the device lock held: it must only signal the
 * event loop (write an eventfd, say), never call back into the device.
 */
void virtio_net_set_rx_wakeup(struct dev *dev, void (*fn)(void *opaque),
			      void *opaque);

#endif /* VMM_DEV_VIRTIO_H */

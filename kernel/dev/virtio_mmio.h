/* SPDX-License-Identifier: MIT */
#ifndef VMM_DEV_VIRTIO_MMIO_H
#define VMM_DEV_VIRTIO_MMIO_H

/*
 * virtio-mmio transport, version 2 (the "modern" register layout of
 * virtio 1.x section 4.2.2). A device model embeds a struct virtio_mmio
 * first in its own struct and plugs in with a struct virtio_mmio_ops; the
 * transport owns the registers, feature negotiation, the queues and the
 * interrupt line (level-triggered: asserted while InterruptStatus != 0).
 *
 * The transport always offers VIRTIO_F_VERSION_1,
 * VIRTIO_RING_F_INDIRECT_DESC and VIRTIO_RING_F_EVENT_IDX on top of the
 * device's features, and refuses FEATURES_OK unless the driver accepted
 * VIRTIO_F_VERSION_1 and only offered bits (legacy drivers are not
 * supported).
 *
 * Any guest violation (a bad queue, a malformed request) sets
 * VIRTIO_CONFIG_S_NEEDS_RESET, breaks every queue and, once the driver is
 * up, raises a configuration-change interrupt. Only a status write of 0
 * (or dev_ops reset) clears it.
 *
 * Locking: t->lock serialises register accesses (vCPU threads), device
 * back-end work (the VMM event loop) and save/load. The ops callbacks are
 * called with it held; the helpers marked "locked" below must be too.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices.pb-c.h"
#include "kernel/dev/dev.h"
#include "kernel/dev/virtq.h"
#include "kernel/util/compiler.h"

struct vm;
struct virtio_mmio;

#define VIRTIO_MMIO_SIZE 0x200
#define VIRTIO_MMIO_MAGIC 0x74726976  /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x4e524d56 /* "VMRN" */
#define VIRTIO_MMIO_MAX_QUEUES 8
#define VIRTIO_MMIO_CONFIG_MAX (VIRTIO_MMIO_SIZE - 0x100)

/* What a device model provides. */
struct virtio_mmio_ops {
	uint32_t device_id;	/* VIRTIO_ID_* */
	uint64_t features;	/* device-specific feature bits */
	unsigned int nr_queues; /* 1..VIRTIO_MMIO_MAX_QUEUES */
	uint16_t queue_max;	/* QueueNumMax, power of two */
	uint32_t config_len;	/* bytes of config space */
	/* Config space access; @off + @len <= config_len is checked. */
	void (*config_read)(struct virtio_mmio *t, uint32_t off, void *data,
			    uint32_t len);
	/* May be NULL: writes to a read-only config space are ignored. */
	void (*config_write)(struct virtio_mmio *t, uint32_t off,
			     const void *data, uint32_t len);
	/* The driver kicked ready queue @q (with DRIVER_OK set). */
	void (*notify)(struct virtio_mmio *t, unsigned int q);
	/* Device-specific part of a reset; may be NULL. */
	void (*reset)(struct virtio_mmio *t);
	/*
	 * Device-model state beyond the transport's, all three NULL if none
	 * (called with t->lock held but check_state): save_state() fills its
	 * part of @m with pointers into the device, valid until the lock
	 * goes; check_state() validates @m changing nothing (0 or -EINVAL);
	 * load_state() commits what check_state() accepted.
	 */
	void (*save_state)(struct virtio_mmio *t, Vmrun__VirtioMmioState *m);
	int (*check_state)(struct virtio_mmio *t,
			   const Vmrun__VirtioMmioState *m);
	void (*load_state)(struct virtio_mmio *t,
			   const Vmrun__VirtioMmioState *m);
};

/*
 * Where the device lives. With @vm set, the window is registered on the
 * VM's MMIO space, guest memory is the VM's and the interrupt goes to
 * irq_line(vm, gsi). With @vm NULL (unit tests), nothing is registered
 * (call virtio_mmio_access() directly), @mem is the guest memory and
 * @irq, if not NULL, receives the line level.
 */
struct virtio_mmio_conf {
	struct vm *vm;
	uint64_t base;
	uint32_t gsi;
	const struct virtq_mem *mem;
	int (*irq)(void *opaque, uint32_t gsi, bool level);
	void *irq_opaque;
};

/* All guest-visible transport state; the queues' is in vq[i].s. */
struct virtio_mmio_state {
	uint32_t status;
	uint32_t isr; /* InterruptStatus */
	uint32_t dev_features_sel;
	uint32_t drv_features_sel;
	uint64_t drv_features;
	uint32_t queue_sel;
	uint32_t config_gen;
};

/*
 * [I] immutable after virtio_mmio_init()   [t] t->lock
 */
struct virtio_mmio {
	struct dev dev;			   /* [I] first: struct dev */
	const struct virtio_mmio_ops *ops; /* [I] */
	struct virtio_mmio_conf conf;	   /* [I] */
	struct virtq_mem mem;		   /* [I] */
	pthread_mutex_t lock;
	struct virtio_mmio_state s;		 /* [t] */
	struct virtq vq[VIRTIO_MMIO_MAX_QUEUES]; /* [t] */
	bool irq_level;				 /* [t] line as last set */
	bool paused;				 /* [t] dev_ops pause() */
	bool registered;			 /* [I] iotrap window */
};

/*
 * Initialises @t (embedded in a device struct whose dev.ops the caller
 * sets) and, with conf->vm, registers the 0x200-byte window. Returns 0,
 * -EINVAL for bad ops, or the iotrap error.
 */
int virtio_mmio_init(struct virtio_mmio *t, const struct virtio_mmio_conf *conf,
		     const struct virtio_mmio_ops *ops) __must_check;

/*
 * Unregisters the window (waiting for handlers in flight), lowers the
 * interrupt line and destroys the lock. Called without t->lock held.
 */
void virtio_mmio_fini(struct virtio_mmio *t);

/*
 * One guest access to the window at offset @off (0..0x1ff): registers
 * need aligned 32-bit accesses, config space takes 1, 2 or 4 bytes.
 * Anything else reads as zero and is ignored on write. Takes t->lock.
 */
void virtio_mmio_access(struct virtio_mmio *t, uint64_t off, void *data,
			uint32_t len, bool is_write);

static inline struct virtio_mmio *virtio_mmio_from_dev(struct dev *dev)
{
	return container_of(dev, struct virtio_mmio, dev);
}

void virtio_mmio_lock(struct virtio_mmio *t);
void virtio_mmio_unlock(struct virtio_mmio *t);

/* Locked: raises the used-buffer interrupt if @vq's driver wants one. */
void virtio_mmio_signal(struct virtio_mmio *t, struct virtq *vq);

/* Locked: bumps ConfigGeneration and raises a config interrupt. */
void virtio_mmio_config_changed(struct virtio_mmio *t);

/* Locked: enters "needs reset" (see above). */
void virtio_mmio_needs_reset(struct virtio_mmio *t);

/* Locked: true once the driver set DRIVER_OK and no reset is needed. */
bool virtio_mmio_running(const struct virtio_mmio *t);

/* Locked: the negotiated features. */
uint64_t virtio_mmio_features(const struct virtio_mmio *t);

/*
 * Generic dev_ops members for virtio-mmio devices. save() writes a
 * versioned little-endian encoding of the transport and queue state;
 * load() validates all of it before changing anything.
 */
void virtio_mmio_dev_reset(struct dev *dev);
int virtio_mmio_dev_pause(struct dev *dev);
int virtio_mmio_dev_resume(struct dev *dev);
int virtio_mmio_dev_save(struct dev *dev, void *buf, size_t len);
int virtio_mmio_dev_load(struct dev *dev, const void *buf, size_t len);

/*
 * Conf strings for dev_ops init: comma-separated key=value pairs.
 * virtio_conf_str() copies the value of @key (or "" for a bare key) and
 * returns 0, -ENOENT if absent, or -ENAMETOOLONG. virtio_conf_mmio()
 * reads the required "base" and "gsi" keys into @mc (for @vm).
 */
int virtio_conf_str(const char *conf, const char *key, char *out,
		    size_t outlen) __must_check;
int virtio_conf_mmio(struct vm *vm, const char *conf,
		     struct virtio_mmio_conf *mc) __must_check;

#endif /* VMM_DEV_VIRTIO_MMIO_H */

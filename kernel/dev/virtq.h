/* SPDX-License-Identifier: MIT */
#ifndef VMM_DEV_VIRTQ_H
#define VMM_DEV_VIRTQ_H

/*
 * Split virtqueue walker (virtio 1.x, VIRTIO_F_VERSION_1, little endian)
 * that treats the guest as hostile.
 *
 * Every descriptor, ring entry and index is read from guest memory once,
 * into a local copy, and validated before use: descriptor indexes, chain
 * length (loops), addresses and lengths (inside guest memory, no
 * wrap-around), indirect tables (no nesting), the avail index (never more
 * than the queue size ahead) and the queue geometry. Any violation marks
 * the queue broken, calls the owner's fault hook (the transport then sets
 * VIRTIO_CONFIG_S_NEEDS_RESET) and stops all further processing until the
 * driver resets the device.
 *
 * Guest memory is reached only through a struct virtq_mem: the VMM wires
 * it to mem.h (mem_gpa_to_hva_ro() for reads, mem_write() and
 * mem_dma_begin()/mem_dma_done() for writes, which mark pages dirty for
 * live migration); unit tests and fuzzers wire it to a flat buffer.
 *
 * Zero-length descriptors are skipped (they neither add a segment nor
 * touch memory, but still count towards the loop limit). A chain has at
 * most VIRTQ_MAX_SEGS segments; longer chains are treated as a violation.
 * Device-readable segments must precede device-writable ones. Each
 * segment must lie inside one guest memory map.
 *
 * Locking: a struct virtq has no lock of its own. Every function below
 * must be called with the owner's lock held (the transport lock for
 * virtio-mmio devices), which serialises vCPU notifies, back-end polls
 * and save/load.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "kernel/util/compiler.h"

struct vm_mem;

/* The spec's names for the ring flags (virtio 1.x section 2.7). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

#define VIRTQ_MAX_SIZE 32768
#define VIRTQ_MAX_SEGS 256

/* Ring alignment required by the spec for split queues. */
#define VIRTQ_DESC_ALIGN 16
#define VIRTQ_AVAIL_ALIGN 2
#define VIRTQ_USED_ALIGN 4

/*
 * Guest memory access. Ranges are [gpa, gpa + len); each op fails (NULL
 * or -EFAULT) unless the range lies inside guest memory.
 *   ro:        read-only host pointer to the range
 *   write:     copies @src in and marks the pages dirty
 *   dma_begin: writable host pointer; the caller must call dma_done()
 *              over the same range after writing, which marks the pages
 */
struct virtq_mem_ops {
	const void *(*ro)(void *opaque, uint64_t gpa, size_t len);
	int (*write)(void *opaque, uint64_t gpa, const void *src, size_t len);
	void *(*dma_begin)(void *opaque, uint64_t gpa, size_t len);
	void (*dma_done)(void *opaque, uint64_t gpa, size_t len);
};

struct virtq_mem {
	const struct virtq_mem_ops *ops;
	void *opaque;
};

/* Wires @m to the VM's guest memory (mem.h). */
void virtq_mem_init_vm(struct virtq_mem *m, struct vm_mem *mem);

/*
 * A flat buffer standing in for guest memory, for unit tests and fuzzers:
 * guest-physical [base, base + size) is buf[0, size). @dirty, if not
 * NULL, has one byte per 4 KiB page and is set to 1 by every write path.
 * @writes counts write and dma_done calls.
 */
struct virtq_flat_mem {
	uint8_t *buf;
	uint64_t base;
	size_t size;
	uint8_t *dirty;
	unsigned long writes;
};

void virtq_mem_init_flat(struct virtq_mem *m, struct virtq_flat_mem *flat);

/*
 * Everything the guest can observe about one queue, in one plain struct
 * that save/restore copies whole. Addresses are the driver's QueueDesc,
 * QueueDriver (avail ring) and QueueDevice (used ring).
 */
struct virtq_state {
	uint64_t desc;
	uint64_t avail;
	uint64_t used;
	uint16_t size;	     /* QueueNum: entries, a power of two */
	uint16_t last_avail; /* next avail ring slot the device consumes */
	uint16_t used_idx;   /* next used ring slot (== used->idx) */
	uint16_t signalled;  /* used_idx at the last virtq_should_notify() */
	uint8_t ready;	     /* QueueReady */
	uint8_t broken;	     /* a violation was seen: stop until reset */
	uint8_t event_idx;   /* VIRTIO_RING_F_EVENT_IDX negotiated */
	uint8_t indirect;    /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	uint8_t pad[4];	     /* zero; no implicit padding */
};
_Static_assert(sizeof(struct virtq_state) == 40, "virtq_state has holes");

struct virtq;

typedef void (*virtq_fault_fn_t)(struct virtq *vq, void *opaque);

/*
 * [I] immutable after virtq_init()
 * [o] owner's lock (the transport lock for virtio-mmio devices)
 */
struct virtq {
	struct virtq_state s;	     /* [o] */
	const struct virtq_mem *mem; /* [I] */
	virtq_fault_fn_t fault;	     /* [I] called once per violation */
	void *fault_opaque;	     /* [I] */
	unsigned int index;	     /* [I] queue number, for messages */
};

/* One validated piece of a chain. */
struct virtq_seg {
	uint64_t gpa;
	uint32_t len;	/* never 0 */
	uint32_t write; /* 1 if device-writable */
};

/*
 * A validated descriptor chain: the first @nr_ro segments are
 * device-readable (@ro_len bytes in all), the rest device-writable
 * (@wr_len bytes). ro_len + wr_len fits in 32 bits.
 */
struct virtq_chain {
	uint16_t head;
	uint16_t nr;
	uint16_t nr_ro;
	uint32_t ro_len;
	uint32_t wr_len;
	struct virtq_seg seg[VIRTQ_MAX_SEGS];
};

/* Sets up @vq (state zeroed, not ready). @fault may be NULL. */
void virtq_init(struct virtq *vq, const struct virtq_mem *mem,
		unsigned int index, virtq_fault_fn_t fault, void *opaque);

/* Back to the power-on state: zeroes vq->s, keeps the wiring. */
void virtq_reset(struct virtq *vq);

/*
 * Checks a state for consistency without touching guest memory (for
 * load()): a ready queue needs a power-of-two size <= @max_size (itself
 * at most VIRTQ_MAX_SIZE), aligned rings whose ranges do not wrap, and
 * 0/1 flags. Returns 0 or -EINVAL.
 */
int virtq_state_check(const struct virtq_state *s,
		      unsigned int max_size) __must_check;

/*
 * Makes the queue ready (the driver wrote QueueReady = 1) with the
 * negotiated @features: checks the geometry as virtq_state_check() does
 * and that all three rings lie inside guest memory, then starts at index
 * 0. Returns 0, or -EINVAL leaving the queue not ready.
 */
int virtq_enable(struct virtq *vq, uint64_t features,
		 unsigned int max_size) __must_check;

/*
 * Takes the next available chain into @chain.
 * Returns 0 on success, -EAGAIN if the avail ring is empty, -ENODEV if
 * the queue is not ready, -EIO if it is broken, or on a violation (which
 * breaks the queue): -ERANGE (index out of range), -ELOOP (chain longer
 * than its table), -EFAULT (buffer or ring outside guest memory or
 * wrapping), -E2BIG (more than VIRTQ_MAX_SEGS segments or 4 GiB), or
 * -EINVAL (avail index too far ahead, bad indirect descriptor, readable
 * after writable).
 */
int virtq_pop(struct virtq *vq, struct virtq_chain *chain) __must_check;

/*
 * Puts @head on the used ring with @len bytes written, then publishes the
 * new used index (release ordered after the element). Returns 0, -ENODEV,
 * -EIO, -EINVAL for a head out of range, or -EFAULT (breaks the queue).
 */
int virtq_push(struct virtq *vq, uint16_t head, uint32_t len);

/*
 * Decides whether the driver wants an interrupt for the buffers used
 * since the last call: with VIRTIO_RING_F_EVENT_IDX by the used_event
 * index, otherwise unless VIRTQ_AVAIL_F_NO_INTERRUPT is set. Call after a
 * batch of virtq_push(); it orders the used index store before reading
 * the driver's suppression fields.
 */
bool virtq_should_notify(struct virtq *vq);

/*
 * Tells the driver to notify for the next buffer (with EVENT_IDX, writes
 * avail_event = last_avail) and re-reads the avail index after a full
 * barrier. Returns true if buffers arrived meanwhile, in which case the
 * caller must pop again before going idle, else a notify may be lost.
 */
bool virtq_rearm(struct virtq *vq);

/* True if the queue is ready and not broken. */
bool virtq_usable(const struct virtq *vq);

/*
 * Marks the queue broken (a violation found by a device model, such as a
 * request too short for its header), logs @why, calls the fault hook and
 * returns @err, so callers can write "return virtq_fail(...)".
 */
int virtq_fail(struct virtq *vq, int err, const char *fmt, ...) __printf(3, 4);

/*
 * Copies @len bytes at byte offset @off of the chain's readable part into
 * @dst, or @src into its writable part (through the write path, which
 * marks pages dirty). Return 0, -EINVAL if the range runs past that part,
 * or -EFAULT if guest memory changed under the chain (breaks the queue).
 */
int virtq_chain_read(struct virtq *vq, const struct virtq_chain *c, size_t off,
		     void *dst, size_t len) __must_check;
int virtq_chain_write(struct virtq *vq, const struct virtq_chain *c, size_t off,
		      const void *src, size_t len) __must_check;

/* Direct access to a segment's memory for devices doing zero-copy I/O. */
const void *virtq_map_ro(struct virtq *vq, uint64_t gpa, size_t len);
void *virtq_dma_begin(struct virtq *vq, uint64_t gpa, size_t len);
void virtq_dma_done(struct virtq *vq, uint64_t gpa, size_t len);

#endif /* VMM_DEV_VIRTQ_H */

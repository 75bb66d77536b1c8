/* SPDX-License-Identifier: MIT */
#include "kernel/dev/virtq.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kernel/mem.h"
#include "kernel/util/log.h"

/* Ring layout (virtio 1.x 2.7): all fields little endian. */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
_Static_assert(sizeof(struct virtq_desc) == 16, "virtq_desc layout");

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};
_Static_assert(sizeof(struct virtq_used_elem) == 8, "used elem layout");

/* Byte offsets inside the avail and used rings. */
#define AVAIL_FLAGS 0
#define AVAIL_IDX 2
#define AVAIL_RING 4
#define USED_FLAGS 0
#define USED_IDX 2
#define USED_RING 4

static uint64_t avail_bytes(unsigned int size)
{
	return 6 + 2ULL * size; /* flags, idx, ring[size], used_event */
}

static uint64_t used_bytes(unsigned int size)
{
	return 6 + 8ULL * size; /* flags, idx, ring[size], avail_event */
}

/* mem.h back end. */

static const void *vm_ro(void *opaque, uint64_t gpa, size_t len)
{
	return mem_gpa_to_hva_ro(opaque, gpa, len);
}

static int vm_write(void *opaque, uint64_t gpa, const void *src, size_t len)
{
	return mem_write(opaque, gpa, src, len);
}

static void *vm_dma_begin(void *opaque, uint64_t gpa, size_t len)
{
	return mem_dma_begin(opaque, gpa, len);
}

static void vm_dma_done(void *opaque, uint64_t gpa, size_t len)
{
	mem_dma_done(opaque, gpa, len);
}

static const struct virtq_mem_ops vm_mem_ops = {
	.ro = vm_ro,
	.write = vm_write,
	.dma_begin = vm_dma_begin,
	.dma_done = vm_dma_done,
};

void virtq_mem_init_vm(struct virtq_mem *m, struct vm_mem *mem)
{
	m->ops = &vm_mem_ops;
	m->opaque = mem;
}

/* Flat-buffer back end, for tests and fuzzers. */

static uint8_t *flat_ptr(struct virtq_flat_mem *f, uint64_t gpa, size_t len)
{
	uint64_t off;

	if (gpa < f->base)
		return NULL;
	off = gpa - f->base;
	if (off > f->size || len > f->size - off)
		return NULL;
	return f->buf + off;
}

static void flat_mark(struct virtq_flat_mem *f, uint64_t gpa, size_t len)
{
	uint64_t p, first, last;

	f->writes++;
	if (!f->dirty || !len || !flat_ptr(f, gpa, len))
		return;
	first = (gpa - f->base) >> PAGE_SHIFT;
	last = (gpa - f->base + len - 1) >> PAGE_SHIFT;
	for (p = first; p <= last; p++)
		f->dirty[p] = 1;
}

static const void *flat_ro(void *opaque, uint64_t gpa, size_t len)
{
	return flat_ptr(opaque, gpa, len);
}

static int flat_write(void *opaque, uint64_t gpa, const void *src, size_t len)
{
	uint8_t *p = flat_ptr(opaque, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	flat_mark(opaque, gpa, len);
	return 0;
}

static void *flat_dma_begin(void *opaque, uint64_t gpa, size_t len)
{
	return flat_ptr(opaque, gpa, len);
}

static void flat_dma_done(void *opaque, uint64_t gpa, size_t len)
{
	flat_mark(opaque, gpa, len);
}

static const struct virtq_mem_ops flat_mem_ops = {
	.ro = flat_ro,
	.write = flat_write,
	.dma_begin = flat_dma_begin,
	.dma_done = flat_dma_done,
};

void virtq_mem_init_flat(struct virtq_mem *m, struct virtq_flat_mem *flat)
{
	m->ops = &flat_mem_ops;
	m->opaque = flat;
}

/* Accessors. */

const void *virtq_map_ro(struct virtq *vq, uint64_t gpa, size_t len)
{
	if (len > UINT64_MAX - gpa)
		return NULL;
	return vq->mem->ops->ro(vq->mem->opaque, gpa, len);
}

void *virtq_dma_begin(struct virtq *vq, uint64_t gpa, size_t len)
{
	if (len > UINT64_MAX - gpa)
		return NULL;
	return vq->mem->ops->dma_begin(vq->mem->opaque, gpa, len);
}

void virtq_dma_done(struct virtq *vq, uint64_t gpa, size_t len)
{
	vq->mem->ops->dma_done(vq->mem->opaque, gpa, len);
}

static int vq_write(struct virtq *vq, uint64_t gpa, const void *src, size_t len)
{
	if (len > UINT64_MAX - gpa)
		return -EFAULT;
	return vq->mem->ops->write(vq->mem->opaque, gpa, src, len);
}

/*
 * Loads a 16-bit ring field. The rings were checked to be aligned, so the
 * load is a single atomic access; @order is the C11 memory order.
 */
static int load16(struct virtq *vq, uint64_t gpa, uint16_t *val, int order)
{
	const uint16_t *p = virtq_map_ro(vq, gpa, 2);

	if (!p)
		return -EFAULT;
	*val = le16toh(__atomic_load_n(p, order));
	return 0;
}

void virtq_init(struct virtq *vq, const struct virtq_mem *mem,
		unsigned int index, virtq_fault_fn_t fault, void *opaque)
{
	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
	vq->index = index;
	vq->fault = fault;
	vq->fault_opaque = opaque;
}

void virtq_reset(struct virtq *vq)
{
	memset(&vq->s, 0, sizeof(vq->s));
}

bool virtq_usable(const struct virtq *vq)
{
	return vq->s.ready && !vq->s.broken;
}

int virtq_fail(struct virtq *vq, int err, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (!vq->s.broken)
		pr_warn("virtq %u: %s: device needs reset", vq->index, why);
	vq->s.broken = 1;
	if (vq->fault)
		vq->fault(vq, vq->fault_opaque);
	return err;
}

static bool range_wraps(uint64_t gpa, uint64_t len)
{
	return len > UINT64_MAX - gpa;
}

int virtq_state_check(const struct virtq_state *s, unsigned int max_size)
{
	if (max_size > VIRTQ_MAX_SIZE)
		return -EINVAL;
	if (s->ready > 1 || s->broken > 1 || s->event_idx > 1 ||
	    s->indirect > 1)
		return -EINVAL;
	if (!s->ready)
		return 0;
	if (!s->size || s->size > max_size || (s->size & (s->size - 1)))
		return -EINVAL;
	if (!IS_ALIGNED(s->desc, VIRTQ_DESC_ALIGN) ||
	    !IS_ALIGNED(s->avail, VIRTQ_AVAIL_ALIGN) ||
	    !IS_ALIGNED(s->used, VIRTQ_USED_ALIGN))
		return -EINVAL;
	if (range_wraps(s->desc, 16ULL * s->size) ||
	    range_wraps(s->avail, avail_bytes(s->size)) ||
	    range_wraps(s->used, used_bytes(s->size)))
		return -EINVAL;
	return 0;
}

int virtq_enable(struct virtq *vq, uint64_t features, unsigned int max_size)
{
	struct virtq_state s = vq->s;

	s.ready = 1;
	s.broken = 0;
	s.event_idx = !!(features & (1ULL << VIRTIO_RING_F_EVENT_IDX));
	s.indirect = !!(features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC));
	s.last_avail = 0;
	s.used_idx = 0;
	s.signalled = 0;
	if (virtq_state_check(&s, max_size))
		goto err_invalid;
	if (!virtq_map_ro(vq, s.desc, 16ULL * s.size) ||
	    !virtq_map_ro(vq, s.avail, avail_bytes(s.size)) ||
	    !virtq_map_ro(vq, s.used, used_bytes(s.size)))
		goto err_invalid;
	vq->s = s;
	return 0;

err_invalid:
	pr_warn("virtq %u: bad geometry: size %u desc %#llx avail %#llx used %#llx",
		vq->index, s.size, (unsigned long long)s.desc,
		(unsigned long long)s.avail, (unsigned long long)s.used);
	return -EINVAL;
}

/* Appends one descriptor's buffer to @c after checking it. */
static int chain_add(struct virtq *vq, struct virtq_chain *c, uint64_t gpa,
		     uint32_t len, bool write)
{
	if (!len)
		return 0;
	if (!write && c->nr != c->nr_ro)
		return virtq_fail(vq, -EINVAL,
				  "readable descriptor after a writable one");
	if (c->nr == VIRTQ_MAX_SEGS)
		return virtq_fail(vq, -E2BIG, "chain longer than %u segments",
				  VIRTQ_MAX_SEGS);
	if ((uint64_t)c->ro_len + c->wr_len + len > UINT32_MAX)
		return virtq_fail(vq, -E2BIG, "chain longer than 4 GiB");
	if (range_wraps(gpa, len) || !virtq_map_ro(vq, gpa, len))
		return virtq_fail(vq, -EFAULT,
				  "buffer %#llx+%#x outside guest memory",
				  (unsigned long long)gpa, len);
	c->seg[c->nr].gpa = gpa;
	c->seg[c->nr].len = len;
	c->seg[c->nr].write = write;
	c->nr++;
	if (write) {
		c->wr_len += len;
	} else {
		c->ro_len += len;
		c->nr_ro++;
	}
	return 0;
}

/* Reads descriptor @i of the table at @table into @d (one copy). */
static int desc_read(struct virtq *vq, uint64_t table, unsigned int i,
		     struct virtq_desc *d)
{
	const void *p = virtq_map_ro(vq, table + 16ULL * i, sizeof(*d));

	if (!p)
		return virtq_fail(vq, -EFAULT,
				  "descriptor table %#llx unreadable",
				  (unsigned long long)table);
	memcpy(d, p, sizeof(*d));
	d->addr = le64toh(d->addr);
	d->len = le32toh(d->len);
	d->flags = le16toh(d->flags);
	d->next = le16toh(d->next);
	return 0;
}

/*
 * Walks an indirect table of @len bytes at @gpa. The table itself must be
 * a whole number of descriptors inside guest memory; its chain starts at
 * entry 0, may not nest another indirect table and may not visit more
 * descriptors than the table holds.
 */
static int walk_indirect(struct virtq *vq, struct virtq_chain *c, uint64_t gpa,
			 uint32_t len)
{
	unsigned int n = len / 16, i = 0, count = 0;
	struct virtq_desc d;
	int ret;

	if (!len || len % 16)
		return virtq_fail(vq, -EINVAL, "indirect table length %u", len);
	if (range_wraps(gpa, len) || !virtq_map_ro(vq, gpa, len))
		return virtq_fail(
			vq, -EFAULT,
			"indirect table %#llx+%#x outside guest memory",
			(unsigned long long)gpa, len);
	for (;;) {
		if (++count > n)
			return virtq_fail(vq, -ELOOP,
					  "indirect chain loops (table of %u)",
					  n);
		ret = desc_read(vq, gpa, i, &d);
		if (ret)
			return ret;
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return virtq_fail(vq, -EINVAL, "nested indirect table");
		ret = chain_add(vq, c, d.addr, d.len,
				d.flags & VIRTQ_DESC_F_WRITE);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = d.next;
		if (i >= n)
			return virtq_fail(vq, -ERANGE,
					  "indirect next %u >= table size %u",
					  i, n);
	}
}

/*
 * Walks the chain starting at @head: zero or more direct descriptors,
 * optionally ended by one indirect descriptor.
 */
static int walk(struct virtq *vq, uint16_t head, struct virtq_chain *c)
{
	unsigned int i = head, count = 0;
	struct virtq_desc d;
	int ret;

	c->head = head;
	c->nr = 0;
	c->nr_ro = 0;
	c->ro_len = 0;
	c->wr_len = 0;
	for (;;) {
		if (++count > vq->s.size)
			return virtq_fail(vq, -ELOOP,
					  "chain from %u loops (queue size %u)",
					  head, vq->s.size);
		ret = desc_read(vq, vq->s.desc, i, &d);
		if (ret)
			return ret;
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!vq->s.indirect)
				return virtq_fail(vq, -EINVAL,
						  "indirect not negotiated");
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return virtq_fail(
					vq, -EINVAL,
					"indirect descriptor with NEXT");
			return walk_indirect(vq, c, d.addr, d.len);
		}
		ret = chain_add(vq, c, d.addr, d.len,
				d.flags & VIRTQ_DESC_F_WRITE);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = d.next;
		if (i >= vq->s.size)
			return virtq_fail(vq, -ERANGE,
					  "next %u >= queue size %u", i,
					  vq->s.size);
	}
}

/* Reads the avail index with acquire order; ring reads come after it. */
static int avail_idx(struct virtq *vq, uint16_t *idx)
{
	if (load16(vq, vq->s.avail + AVAIL_IDX, idx, __ATOMIC_ACQUIRE))
		return virtq_fail(vq, -EFAULT, "avail ring unreadable");
	return 0;
}

int virtq_pop(struct virtq *vq, struct virtq_chain *chain)
{
	struct virtq_state *s = &vq->s;
	uint16_t idx = 0, pending, head = 0;
	int ret;

	if (!s->ready)
		return -ENODEV;
	if (s->broken)
		return -EIO;
	ret = avail_idx(vq, &idx);
	if (ret)
		return ret;
	pending = idx - s->last_avail;
	if (!pending)
		return -EAGAIN;
	if (pending > s->size)
		return virtq_fail(vq, -EINVAL,
				  "avail idx %u is %u ahead of %u (size %u)",
				  idx, pending, s->last_avail, s->size);
	if (load16(vq,
		   s->avail + AVAIL_RING +
			   2ULL * (s->last_avail & (s->size - 1)),
		   &head, __ATOMIC_RELAXED))
		return virtq_fail(vq, -EFAULT, "avail ring unreadable");
	if (head >= s->size)
		return virtq_fail(vq, -ERANGE, "head %u >= queue size %u", head,
				  s->size);
	ret = walk(vq, head, chain);
	if (ret)
		return ret;
	s->last_avail++;
	return 0;
}

int virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	struct virtq_state *s = &vq->s;
	struct virtq_used_elem e;
	uint64_t slot, idx_gpa = s->used + USED_IDX;
	uint16_t *idx;

	if (!s->ready)
		return -ENODEV;
	if (s->broken)
		return -EIO;
	if (head >= s->size)
		return -EINVAL;
	slot = s->used_idx & (s->size - 1);
	e.id = htole32(head);
	e.len = htole32(len);
	if (vq_write(vq, s->used + USED_RING + 8 * slot, &e, sizeof(e)))
		return virtq_fail(vq, -EFAULT, "used ring unwritable");
	idx = virtq_dma_begin(vq, idx_gpa, 2);
	if (!idx)
		return virtq_fail(vq, -EFAULT, "used ring unwritable");
	s->used_idx++;
	/* Release: the element is visible before the index that covers it. */
	__atomic_store_n(idx, htole16(s->used_idx), __ATOMIC_RELEASE);
	virtq_dma_done(vq, idx_gpa, 2);
	return 0;
}

bool virtq_should_notify(struct virtq *vq)
{
	struct virtq_state *s = &vq->s;
	uint16_t old, val;

	if (!virtq_usable(vq))
		return false;
	/*
	 * Store-load ordering: the used index store must be visible before
	 * we read used_event/flags, or we could miss an update the driver
	 * made after seeing the old index, and it would wait forever.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	old = s->signalled;
	s->signalled = s->used_idx;
	if (s->event_idx) {
		if (load16(vq, s->avail + AVAIL_RING + 2ULL * s->size, &val,
			   __ATOMIC_RELAXED))
			return true;
		/* Interrupt if used_event lies in [old, new). */
		return (uint16_t)(s->used_idx - val - 1) <
		       (uint16_t)(s->used_idx - old);
	}
	if (old == s->used_idx)
		return false;
	if (load16(vq, s->avail + AVAIL_FLAGS, &val, __ATOMIC_RELAXED))
		return true;
	return !(val & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

bool virtq_rearm(struct virtq *vq)
{
	struct virtq_state *s = &vq->s;
	uint16_t ev = htole16(s->last_avail), idx = 0;

	if (!virtq_usable(vq))
		return false;
	if (s->event_idx &&
	    vq_write(vq, s->used + USED_RING + 8ULL * s->size, &ev, 2)) {
		virtq_fail(vq, -EFAULT, "used ring unwritable");
		return false;
	}
	/* The avail_event store must be visible before we re-read idx. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (load16(vq, s->avail + AVAIL_IDX, &idx, __ATOMIC_ACQUIRE))
		return true; /* let virtq_pop() report it */
	return idx != s->last_avail;
}

int virtq_chain_read(struct virtq *vq, const struct virtq_chain *c, size_t off,
		     void *dst, size_t len)
{
	uint8_t *out = dst;
	unsigned int i;

	if (off > c->ro_len || len > c->ro_len - off)
		return -EINVAL;
	for (i = 0; i < c->nr_ro && len; i++) {
		const struct virtq_seg *sg = &c->seg[i];
		const void *p;
		size_t n;

		if (off >= sg->len) {
			off -= sg->len;
			continue;
		}
		n = MIN(sg->len - off, len);
		p = virtq_map_ro(vq, sg->gpa + off, n);
		if (!p)
			return virtq_fail(vq, -EFAULT, "buffer vanished");
		memcpy(out, p, n);
		out += n;
		len -= n;
		off = 0;
	}
	return 0;
}

int virtq_chain_write(struct virtq *vq, const struct virtq_chain *c, size_t off,
		      const void *src, size_t len)
{
	const uint8_t *in = src;
	unsigned int i;

	if (off > c->wr_len || len > c->wr_len - off)
		return -EINVAL;
	for (i = c->nr_ro; i < c->nr && len; i++) {
		const struct virtq_seg *sg = &c->seg[i];
		size_t n;

		if (off >= sg->len) {
			off -= sg->len;
			continue;
		}
		n = MIN(sg->len - off, len);
		if (vq_write(vq, sg->gpa + off, in, n))
			return virtq_fail(vq, -EFAULT, "buffer vanished");
		in += n;
		len -= n;
		off = 0;
	}
	return 0;
}

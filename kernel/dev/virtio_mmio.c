/* SPDX-License-Identifier: MIT */
#include "kernel/dev/virtio_mmio.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/virtio_mmio.h>

#include "kernel/dev/dev_state.h"
#include "kernel/iotrap.h"
#include "kernel/irq.h"
#include "kernel/util/log.h"
#include "kernel/vcpu.h"
#include "kernel/vm.h"

#define STATUS_KNOWN                                               \
	(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |    \
	 VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_FEATURES_OK | \
	 VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED)
#define ISR_KNOWN (VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG)

static uint64_t offered(const struct virtio_mmio *t)
{
	return t->ops->features | (1ULL << VIRTIO_F_VERSION_1) |
	       (1ULL << VIRTIO_RING_F_INDIRECT_DESC) |
	       (1ULL << VIRTIO_RING_F_EVENT_IDX);
}

void virtio_mmio_lock(struct virtio_mmio *t)
{
	pthread_mutex_lock(&t->lock);
}

void virtio_mmio_unlock(struct virtio_mmio *t)
{
	pthread_mutex_unlock(&t->lock);
}

static int set_line(struct virtio_mmio *t, bool level)
{
	if (t->conf.vm)
		return irq_line(t->conf.vm, t->conf.gsi, level);
	if (t->conf.irq)
		return t->conf.irq(t->conf.irq_opaque, t->conf.gsi, level);
	return 0;
}

/*
 * Drives the level-triggered line from InterruptStatus. With @force the
 * line is set even if it seems unchanged (after load()). Locked.
 */
static void irq_update(struct virtio_mmio *t, bool force)
{
	bool level = t->s.isr != 0;
	int ret;

	if (level == t->irq_level && !force)
		return;
	t->irq_level = level;
	ret = set_line(t, level);
	if (ret)
		pr_warn("virtio-mmio %#llx: gsi %u: %s",
			(unsigned long long)t->conf.base, t->conf.gsi,
			strerror(-ret));
}

void virtio_mmio_signal(struct virtio_mmio *t, struct virtq *vq)
{
	if (!virtio_mmio_running(t) || !virtq_should_notify(vq))
		return;
	t->s.isr |= VIRTIO_MMIO_INT_VRING;
	irq_update(t, false);
}

void virtio_mmio_config_changed(struct virtio_mmio *t)
{
	t->s.config_gen++;
	if (!(t->s.status & VIRTIO_CONFIG_S_DRIVER_OK))
		return;
	t->s.isr |= VIRTIO_MMIO_INT_CONFIG;
	irq_update(t, false);
}

void virtio_mmio_needs_reset(struct virtio_mmio *t)
{
	unsigned int i;

	for (i = 0; i < t->ops->nr_queues; i++)
		t->vq[i].s.broken = 1;
	if (t->s.status & VIRTIO_CONFIG_S_NEEDS_RESET)
		return;
	pr_warn("virtio-mmio %#llx (device %u): needs reset",
		(unsigned long long)t->conf.base, t->ops->device_id);
	t->s.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
	if (t->s.status & VIRTIO_CONFIG_S_DRIVER_OK) {
		t->s.isr |= VIRTIO_MMIO_INT_CONFIG;
		irq_update(t, false);
	}
}

bool virtio_mmio_running(const struct virtio_mmio *t)
{
	return (t->s.status & VIRTIO_CONFIG_S_DRIVER_OK) &&
	       !(t->s.status & VIRTIO_CONFIG_S_NEEDS_RESET);
}

uint64_t virtio_mmio_features(const struct virtio_mmio *t)
{
	return t->s.drv_features;
}

static void vq_fault(struct virtq *vq __unused, void *opaque)
{
	virtio_mmio_needs_reset(opaque);
}

/* Status 0: back to the power-on state. Locked. */
static void device_reset(struct virtio_mmio *t)
{
	uint32_t gen = t->s.config_gen;
	unsigned int i;

	if (t->ops->reset)
		t->ops->reset(t);
	for (i = 0; i < t->ops->nr_queues; i++)
		virtq_reset(&t->vq[i]);
	memset(&t->s, 0, sizeof(t->s));
	t->s.config_gen = gen;
	irq_update(t, false);
}

static struct virtq *cur_queue(struct virtio_mmio *t)
{
	if (t->s.queue_sel >= t->ops->nr_queues)
		return NULL;
	return &t->vq[t->s.queue_sel];
}

static uint32_t reg_read(struct virtio_mmio *t, uint64_t off)
{
	struct virtq *vq = cur_queue(t);

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return 2;
	case VIRTIO_MMIO_DEVICE_ID:
		return t->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (t->s.dev_features_sel > 1)
			return 0;
		return offered(t) >> (32 * t->s.dev_features_sel);
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return vq ? t->ops->queue_max : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return vq ? vq->s.ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return t->s.isr;
	case VIRTIO_MMIO_STATUS:
		return t->s.status;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		return vq ? (uint32_t)vq->s.desc : 0;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		return vq ? vq->s.desc >> 32 : 0;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
		return vq ? (uint32_t)vq->s.avail : 0;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		return vq ? vq->s.avail >> 32 : 0;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
		return vq ? (uint32_t)vq->s.used : 0;
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		return vq ? vq->s.used >> 32 : 0;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return t->s.config_gen;
	default:
		return 0;
	}
}

static void set_lo(uint64_t *v, uint32_t lo)
{
	*v = (*v & ~0xffffffffULL) | lo;
}

static void set_hi(uint64_t *v, uint32_t hi)
{
	*v = (*v & 0xffffffffULL) | ((uint64_t)hi << 32);
}

static void status_write(struct virtio_mmio *t, uint32_t v)
{
	uint32_t keep = t->s.status & VIRTIO_CONFIG_S_NEEDS_RESET;
	uint64_t f = t->s.drv_features;

	if (!v) {
		device_reset(t);
		return;
	}
	v &= ~VIRTIO_CONFIG_S_NEEDS_RESET;
	if ((v & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    !(t->s.status & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    ((f & ~offered(t)) || !(f & (1ULL << VIRTIO_F_VERSION_1)))) {
		pr_warn("virtio-mmio %#llx: refusing features %#llx",
			(unsigned long long)t->conf.base,
			(unsigned long long)f);
		v &= ~VIRTIO_CONFIG_S_FEATURES_OK;
	}
	t->s.status = v | keep;
}

static void queue_ready_write(struct virtio_mmio *t, struct virtq *vq,
			      uint32_t v)
{
	if (!v) {
		vq->s.ready = 0;
		return;
	}
	if (vq->s.ready || (t->s.status & VIRTIO_CONFIG_S_NEEDS_RESET))
		return;
	if (virtq_enable(vq, t->s.drv_features, t->ops->queue_max))
		virtio_mmio_needs_reset(t);
}

static void reg_write(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	struct virtq *vq = cur_queue(t);
	bool qw = vq && !vq->s.ready; /* queue setup registers writable */

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		t->s.dev_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if ((t->s.status & VIRTIO_CONFIG_S_FEATURES_OK) ||
		    t->s.drv_features_sel > 1)
			break;
		if (t->s.drv_features_sel)
			set_hi(&t->s.drv_features, v);
		else
			set_lo(&t->s.drv_features, v);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		t->s.drv_features_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		t->s.queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		/* Checked against QueueNumMax when the queue is enabled. */
		if (qw)
			vq->s.size = v > VIRTQ_MAX_SIZE ? 0 : v;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (vq)
			queue_ready_write(t, vq, v);
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		if (v < t->ops->nr_queues && virtio_mmio_running(t) &&
		    virtq_usable(&t->vq[v]) && !t->paused)
			t->ops->notify(t, v);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		t->s.isr &= ~v;
		irq_update(t, false);
		break;
	case VIRTIO_MMIO_STATUS:
		status_write(t, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		if (qw)
			set_lo(&vq->s.desc, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (qw)
			set_hi(&vq->s.desc, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
		if (qw)
			set_lo(&vq->s.avail, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if (qw)
			set_hi(&vq->s.avail, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
		if (qw)
			set_lo(&vq->s.used, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (qw)
			set_hi(&vq->s.used, v);
		break;
	default:
		pr_debug("virtio-mmio %#llx: write to %#llx ignored",
			 (unsigned long long)t->conf.base,
			 (unsigned long long)off);
		break;
	}
}

static void config_access(struct virtio_mmio *t, uint32_t off, void *data,
			  uint32_t len, bool is_write)
{
	if (off > t->ops->config_len || len > t->ops->config_len - off) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (!is_write)
		t->ops->config_read(t, off, data, len);
	else if (t->ops->config_write)
		t->ops->config_write(t, off, data, len);
}

void virtio_mmio_access(struct virtio_mmio *t, uint64_t off, void *data,
			uint32_t len, bool is_write)
{
	uint32_t v;

	pthread_mutex_lock(&t->lock);
	if (off >= VIRTIO_MMIO_CONFIG && off < VIRTIO_MMIO_SIZE &&
	    (len == 1 || len == 2 || len == 4)) {
		config_access(t, off - VIRTIO_MMIO_CONFIG, data, len, is_write);
	} else if (off < VIRTIO_MMIO_CONFIG && len == 4 && !(off & 3)) {
		if (is_write) {
			memcpy(&v, data, 4);
			reg_write(t, off, le32toh(v));
		} else {
			v = htole32(reg_read(t, off));
			memcpy(data, &v, 4);
		}
	} else if (!is_write) {
		memset(data, 0, len);
	}
	pthread_mutex_unlock(&t->lock);
}

static int mmio_trap(struct vcpu *vcpu __unused, uint64_t addr, void *data,
		     uint32_t len, bool is_write, void *opaque)
{
	struct virtio_mmio *t = opaque;

	virtio_mmio_access(t, addr - t->conf.base, data, len, is_write);
	return VCPU_CONTINUE;
}

int virtio_mmio_init(struct virtio_mmio *t, const struct virtio_mmio_conf *conf,
		     const struct virtio_mmio_ops *ops)
{
	unsigned int i;
	int ret;

	if (!ops->nr_queues || ops->nr_queues > VIRTIO_MMIO_MAX_QUEUES ||
	    !ops->queue_max || ops->queue_max > VIRTQ_MAX_SIZE ||
	    (ops->queue_max & (ops->queue_max - 1)) || !ops->notify ||
	    ops->config_len > VIRTIO_MMIO_CONFIG_MAX ||
	    (ops->config_len && !ops->config_read))
		return -EINVAL;
	if (!conf->vm && !conf->mem)
		return -EINVAL;
	t->ops = ops;
	t->conf = *conf;
	if (conf->vm)
		virtq_mem_init_vm(&t->mem, vm_mem(conf->vm));
	else
		t->mem = *conf->mem;
	memset(&t->s, 0, sizeof(t->s));
	for (i = 0; i < VIRTIO_MMIO_MAX_QUEUES; i++)
		virtq_init(&t->vq[i], &t->mem, i, vq_fault, t);
	t->irq_level = false;
	t->paused = false;
	t->registered = false;
	pthread_mutex_init(&t->lock, NULL);
	if (conf->vm) {
		ret = iotrap_register(vm_mmio(conf->vm), conf->base,
				      VIRTIO_MMIO_SIZE, mmio_trap, t);
		if (ret) {
			pr_err("virtio-mmio %#llx: cannot claim window: %s",
			       (unsigned long long)conf->base, strerror(-ret));
			goto err_lock;
		}
		t->registered = true;
	}
	return 0;

err_lock:
	pthread_mutex_destroy(&t->lock);
	return ret;
}

void virtio_mmio_fini(struct virtio_mmio *t)
{
	int ret;

	if (t->registered) {
		ret = iotrap_unregister(vm_mmio(t->conf.vm), t->conf.base);
		if (ret)
			pr_warn("virtio-mmio %#llx: unregister: %s",
				(unsigned long long)t->conf.base,
				strerror(-ret));
		t->registered = false;
	}
	if (t->irq_level && set_line(t, false))
		pr_warn("virtio-mmio %#llx: cannot lower gsi %u",
			(unsigned long long)t->conf.base, t->conf.gsi);
	t->irq_level = false;
	pthread_mutex_destroy(&t->lock);
}

void virtio_mmio_dev_reset(struct dev *dev)
{
	struct virtio_mmio *t = virtio_mmio_from_dev(dev);

	pthread_mutex_lock(&t->lock);
	device_reset(t);
	pthread_mutex_unlock(&t->lock);
}

int virtio_mmio_dev_pause(struct dev *dev)
{
	struct virtio_mmio *t = virtio_mmio_from_dev(dev);

	pthread_mutex_lock(&t->lock);
	t->paused = true;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

int virtio_mmio_dev_resume(struct dev *dev)
{
	struct virtio_mmio *t = virtio_mmio_from_dev(dev);

	pthread_mutex_lock(&t->lock);
	t->paused = false;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/*
 * The state is a vmrun.VirtioMmioState (proto/devices.proto): the
 * transport's registers, each queue, and what the device model adds
 * through its save_state/check_state/load_state hooks.
 */
int virtio_mmio_dev_save(struct dev *dev, void *buf, size_t len)
{
	struct virtio_mmio *t = virtio_mmio_from_dev(dev);
	Vmrun__VirtioMmioState m = VMRUN__VIRTIO_MMIO_STATE__INIT;
	Vmrun__VirtqState qs[VIRTIO_MMIO_MAX_QUEUES];
	Vmrun__VirtqState *qp[VIRTIO_MMIO_MAX_QUEUES];
	unsigned int i;
	int ret;

	pthread_mutex_lock(&t->lock);
	m.device_id = t->ops->device_id;
	m.status = t->s.status;
	m.isr = t->s.isr;
	m.dev_features_sel = t->s.dev_features_sel;
	m.drv_features_sel = t->s.drv_features_sel;
	m.drv_features = t->s.drv_features;
	m.queue_sel = t->s.queue_sel;
	m.config_gen = t->s.config_gen;
	for (i = 0; i < t->ops->nr_queues; i++) {
		const struct virtq_state *q = &t->vq[i].s;

		vmrun__virtq_state__init(&qs[i]);
		qs[i].desc = q->desc;
		qs[i].avail = q->avail;
		qs[i].used = q->used;
		qs[i].size = q->size;
		qs[i].last_avail = q->last_avail;
		qs[i].used_idx = q->used_idx;
		qs[i].signalled = q->signalled;
		qs[i].ready = q->ready;
		qs[i].broken = q->broken;
		qs[i].event_idx = q->event_idx;
		qs[i].indirect = q->indirect;
		qp[i] = &qs[i];
	}
	m.n_queues = t->ops->nr_queues;
	m.queues = qp;
	if (t->ops->save_state)
		t->ops->save_state(t, &m);
	/* Packed under the lock: the hooks' data points into the device. */
	ret = dev_state_pack(&m.base, buf, len);
	pthread_mutex_unlock(&t->lock);
	return ret;
}

int virtio_mmio_dev_load(struct dev *dev, const void *buf, size_t len)
{
	struct virtio_mmio *t = virtio_mmio_from_dev(dev);
	struct virtq_state q[VIRTIO_MMIO_MAX_QUEUES];
	Vmrun__VirtioMmioState *m;
	struct virtio_mmio_state s;
	unsigned int i;
	int ret = -EINVAL;

	/* Phase 1: decode and validate into locals. */
	m = vmrun__virtio_mmio_state__unpack(NULL, len, buf);
	if (!m)
		return -EINVAL;
	memset(q, 0, sizeof(q));
	if (m->device_id != t->ops->device_id ||
	    m->n_queues != t->ops->nr_queues)
		goto out;
	s.status = m->status;
	s.isr = m->isr;
	s.dev_features_sel = m->dev_features_sel;
	s.drv_features_sel = m->drv_features_sel;
	s.drv_features = m->drv_features;
	s.queue_sel = m->queue_sel;
	s.config_gen = m->config_gen;
	if ((s.status & ~STATUS_KNOWN) || (s.isr & ~ISR_KNOWN) ||
	    (s.drv_features & ~offered(t)))
		goto out;
	for (i = 0; i < t->ops->nr_queues; i++) {
		const Vmrun__VirtqState *x = m->queues[i];

		if (x->size > UINT16_MAX || x->last_avail > UINT16_MAX ||
		    x->used_idx > UINT16_MAX || x->signalled > UINT16_MAX)
			goto out;
		q[i].desc = x->desc;
		q[i].avail = x->avail;
		q[i].used = x->used;
		q[i].size = (uint16_t)x->size;
		q[i].last_avail = (uint16_t)x->last_avail;
		q[i].used_idx = (uint16_t)x->used_idx;
		q[i].signalled = (uint16_t)x->signalled;
		q[i].ready = x->ready;
		q[i].broken = x->broken;
		q[i].event_idx = x->event_idx;
		q[i].indirect = x->indirect;
		if (virtq_state_check(&q[i], t->ops->queue_max))
			goto out;
	}
	/* Device-model state only where the model keeps some. */
	if (t->ops->check_state ? t->ops->check_state(t, m) < 0 : !!m->net)
		goto out;

	/* Phase 2: commit. */
	pthread_mutex_lock(&t->lock);
	t->s = s;
	for (i = 0; i < t->ops->nr_queues; i++)
		t->vq[i].s = q[i];
	if (t->ops->load_state)
		t->ops->load_state(t, m);
	irq_update(t, true);
	pthread_mutex_unlock(&t->lock);
	ret = 0;
out:
	vmrun__virtio_mmio_state__free_unpacked(m, NULL);
	return ret;
}

int virtio_conf_str(const char *conf, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *p = conf;

	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t tlen = end ? (size_t)(end - p) : strlen(p);

		if (tlen >= klen && !strncmp(p, key, klen) &&
		    (tlen == klen || p[klen] == '=')) {
			size_t vlen = tlen == klen ? 0 : tlen - klen - 1;

			if (vlen >= outlen)
				return -ENAMETOOLONG;
			memcpy(out, p + tlen - vlen, vlen);
			out[vlen] = '\0';
			return 0;
		}
		p = end ? end + 1 : NULL;
	}
	return -ENOENT;
}

static int conf_u64(const char *conf, const char *key, uint64_t *v)
{
	char buf[32], *end;
	int ret = virtio_conf_str(conf, key, buf, sizeof(buf));

	if (ret)
		return ret == -ENOENT ? -EINVAL : ret;
	errno = 0;
	*v = strtoull(buf, &end, 0);
	if (!buf[0] || *end || errno)
		return -EINVAL;
	return 0;
}

int virtio_conf_mmio(struct vm *vm, const char *conf,
		     struct virtio_mmio_conf *mc)
{
	uint64_t base, gsi;

	if (!conf || conf_u64(conf, "base", &base) ||
	    conf_u64(conf, "gsi", &gsi) || gsi > UINT32_MAX) {
		pr_err("virtio: conf '%s' needs base=ADDR,gsi=N",
		       conf ? conf : "");
		return -EINVAL;
	}
	memset(mc, 0, sizeof(*mc));
	mc->vm = vm;
	mc->base = base;
	mc->gsi = gsi;
	return 0;
}

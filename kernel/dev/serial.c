/* SPDX-License-Identifier: MIT */
/*
 * 16550A UART at COM1 (ports 0x3f8..0x3ff, IRQ 4). Transmission is
 * instant: THR writes go straight to the console back end, so LSR always
 * reports the transmitter empty. Received bytes come from the VMM's event
 * loop (serial_rx()), into a 16-byte FIFO.
 *
 * Console back ends (the conf string): "stdio", "file:PATH", "none".
 */
#include "kernel/dev/serial.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernel/dev/dev_state.h"
#include "kernel/iotrap.h"
#include "kernel/irq.h"
#include "kernel/util/log.h"
#include "kernel/vcpu.h"
#include "kernel/vm.h"

#define UART_BASE 0x3f8
#define UART_IRQ 4
#define FIFO_LEN 16

#define IER_RDI 0x01  /* received data available */
#define IER_THRI 0x02 /* transmitter holding register empty */
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define LCR_DLAB 0x80
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_LOOP 0x10
#define MSR_DEFAULT 0xb0 /* DCD, DSR, CTS */

/* The guest-visible state: saved and restored whole. */
struct serial_regs {
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	uint8_t thr_pending; /* THR-empty interrupt not yet acknowledged */
	uint8_t rx_len;
	uint8_t rx[FIFO_LEN];
};

struct serial {
	struct dev dev;
	pthread_mutex_t lock;
	struct serial_regs r; /* [lock] */
	bool irq_level;	      /* [lock] */
	int out_fd;	      /* -1: none */
	bool own_fd;
};

static uint8_t serial_iir(const struct serial_regs *r)
{
	uint8_t fifo = (r->fcr & 1) ? IIR_FIFO : 0;

	if ((r->ier & IER_RDI) && r->rx_len)
		return IIR_RDI | fifo;
	if ((r->ier & IER_THRI) && r->thr_pending)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

/* Called with s->lock held. */
static void serial_update_irq(struct serial *s)
{
	bool level = !(serial_iir(&s->r) & IIR_NONE);

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	if (irq_line(s->dev.vm, UART_IRQ, level) < 0 && level)
		pr_debug("serial: no irqchip to raise IRQ %d", UART_IRQ);
}

static void serial_out(struct serial *s, uint8_t c)
{
	ssize_t n;

	if (s->out_fd < 0)
		return;
	do {
		n = write(s->out_fd, &c, 1);
	} while (n < 0 && errno == EINTR);
}

static int serial_io(struct vcpu *vcpu __unused, uint64_t addr, void *data,
		     uint32_t len, bool is_write, void *opaque)
{
	struct serial *s = opaque;
	struct serial_regs *r = &s->r;
	unsigned int reg = (unsigned int)(addr - UART_BASE);
	uint8_t v = is_write ? *(uint8_t *)data : 0xff;

	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return VCPU_CONTINUE;
	}
	pthread_mutex_lock(&s->lock);
	if (is_write) {
		switch (reg) {
		case 0:
			if (r->lcr & LCR_DLAB) {
				r->dll = v;
			} else if (r->mcr & MCR_LOOP) {
				if (r->rx_len < FIFO_LEN)
					r->rx[r->rx_len++] = v;
				r->thr_pending = 1;
			} else {
				serial_out(s, v);
				r->thr_pending = 1;
			}
			break;
		case 1:
			if (r->lcr & LCR_DLAB) {
				r->dlm = v;
			} else {
				/* Enabling THRI with an empty THR interrupts. */
				if (!(r->ier & IER_THRI) && (v & IER_THRI))
					r->thr_pending = 1;
				r->ier = v & 0x0f;
			}
			break;
		case 2:
			r->fcr = v & 0xc9;
			if (v & 0x02)
				r->rx_len = 0;
			break;
		case 3:
			r->lcr = v;
			break;
		case 4:
			r->mcr = v & 0x1f;
			break;
		case 7:
			r->scr = v;
			break;
		default:
			break; /* LSR and MSR are read-only */
		}
	} else {
		switch (reg) {
		case 0:
			if (r->lcr & LCR_DLAB) {
				v = r->dll;
			} else {
				v = r->rx_len ? r->rx[0] : 0;
				if (r->rx_len)
					memmove(r->rx, r->rx + 1, --r->rx_len);
			}
			break;
		case 1:
			v = (r->lcr & LCR_DLAB) ? r->dlm : r->ier;
			break;
		case 2:
			v = serial_iir(r);
			if ((v & 0x0f) == IIR_THRI)
				r->thr_pending = 0;
			break;
		case 3:
			v = r->lcr;
			break;
		case 4:
			v = r->mcr;
			break;
		case 5:
			v = LSR_THRE | LSR_TEMT | (r->rx_len ? LSR_DR : 0);
			break;
		case 6:
			v = (r->mcr & MCR_LOOP) ?
				    (uint8_t)((r->mcr & 0x0f) << 4) :
				    MSR_DEFAULT;
			break;
		default:
			v = r->scr;
			break;
		}
		*(uint8_t *)data = v;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return VCPU_CONTINUE;
}

size_t serial_rx(struct dev *dev, const void *buf, size_t len)
{
	struct serial *s = container_of(dev, struct serial, dev);
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && s->r.rx_len < FIFO_LEN)
		s->r.rx[s->r.rx_len++] = ((const uint8_t *)buf)[n++];
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

static void serial_reset(struct dev *dev)
{
	struct serial *s = container_of(dev, struct serial, dev);

	pthread_mutex_lock(&s->lock);
	memset(&s->r, 0, sizeof(s->r));
	s->r.dll = 12; /* 9600 baud */
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static int serial_init(struct vm *vm, const char *conf, struct dev **out)
{
	struct serial *s;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->dev.vm = vm;
	s->dev.ops = &serial_ops;
	s->out_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	if (!conf || !strcmp(conf, "stdio")) {
		s->out_fd = STDOUT_FILENO;
	} else if (!strncmp(conf, "file:", 5) && conf[5]) {
		s->out_fd = open(conf + 5,
				 O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
					 O_APPEND,
				 0644);
		if (s->out_fd < 0) {
			ret = -errno;
			pr_err("serial: cannot open console file %s: %s",
			       conf + 5, strerror(-ret));
			goto err_free;
		}
		s->own_fd = true;
	} else if (strcmp(conf, "none")) {
		pr_err("serial: console '%s' is not stdio, file:PATH or none",
		       conf);
		ret = -EINVAL;
		goto err_free;
	}
	s->r.dll = 12;
	ret = iotrap_register(vm_pio(vm), UART_BASE, 8, serial_io, s);
	if (ret < 0) {
		pr_err("serial: ports %#x..%#x: %s", UART_BASE, UART_BASE + 7,
		       strerror(-ret));
		goto err_close;
	}
	*out = &s->dev;
	return 0;

err_close:
	if (s->own_fd)
		close(s->out_fd);
err_free:
	pthread_mutex_destroy(&s->lock);
	free(s);
	return ret;
}

static void serial_fini(struct dev *dev)
{
	struct serial *s = container_of(dev, struct serial, dev);

	if (iotrap_unregister(vm_pio(dev->vm), UART_BASE) < 0)
		pr_warn("serial: ports were not registered");
	if (s->own_fd)
		close(s->out_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int serial_save(struct dev *dev, void *buf, size_t len)
{
	struct serial *s = container_of(dev, struct serial, dev);
	Vmrun__SerialState m = VMRUN__SERIAL_STATE__INIT;
	struct serial_regs r;

	pthread_mutex_lock(&s->lock);
	r = s->r;
	pthread_mutex_unlock(&s->lock);
	m.ier = r.ier;
	m.lcr = r.lcr;
	m.mcr = r.mcr;
	m.scr = r.scr;
	m.fcr = r.fcr;
	m.dll = r.dll;
	m.dlm = r.dlm;
	m.thr_pending = r.thr_pending;
	m.rx.data = r.rx;
	m.rx.len = r.rx_len;
	return dev_state_pack(&m.base, buf, len);
}

static int serial_load(struct dev *dev, const void *buf, size_t len)
{
	struct serial *s = container_of(dev, struct serial, dev);
	Vmrun__SerialState *m = vmrun__serial_state__unpack(NULL, len, buf);
	struct serial_regs r = { 0 };
	int ret = -EINVAL;

	if (!m)
		return -EINVAL;
	if (m->rx.len > FIFO_LEN || m->ier > 0x0f || m->mcr > 0x1f ||
	    m->lcr > 0xff || m->scr > 0xff || m->fcr > 0xff || m->dll > 0xff ||
	    m->dlm > 0xff)
		goto out;
	r.ier = (uint8_t)m->ier;
	r.lcr = (uint8_t)m->lcr;
	r.mcr = (uint8_t)m->mcr;
	r.scr = (uint8_t)m->scr;
	r.fcr = (uint8_t)m->fcr;
	r.dll = (uint8_t)m->dll;
	r.dlm = (uint8_t)m->dlm;
	r.thr_pending = m->thr_pending;
	r.rx_len = (uint8_t)m->rx.len;
	if (m->rx.len)
		memcpy(r.rx, m->rx.data, m->rx.len);
	pthread_mutex_lock(&s->lock);
	s->r = r;
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	ret = 0;
out:
	vmrun__serial_state__free_unpacked(m, NULL);
	return ret;
}

const struct dev_ops serial_ops = {
	.name = "serial",
	.state_type = "vmrun.SerialState",
	.init = serial_init,
	.fini = serial_fini,
	.reset = serial_reset,
	.save = serial_save,
	.load = serial_load,
};

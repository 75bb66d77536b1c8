/* SPDX-License-Identifier: MIT */
/*
 * CMOS RTC (ports 0x70 index, 0x71 data): the time registers read the
 * host's UTC clock plus an offset the guest sets by writing them; the rest
 * is 128 bytes of CMOS RAM. No alarm or periodic interrupt.
 */
#include "kernel/dev/legacy.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernel/dev/dev_state.h"
#include "kernel/iotrap.h"
#include "kernel/util/log.h"
#include "kernel/vcpu.h"
#include "kernel/vm.h"

#define RTC_PORT 0x70
#define REG_A 0x0a
#define REG_B 0x0b
#define REG_C 0x0c
#define REG_D 0x0d
#define REG_B_24H 0x02
#define REG_B_BIN 0x04
#define REG_CENTURY 0x32

struct rtc_regs {
	uint8_t index;
	uint8_t ram[128];
	int64_t offset; /* seconds added to the host clock */
};

struct rtc {
	struct dev dev;
	pthread_mutex_t lock;
	struct rtc_regs r; /* [lock] */
};

static uint8_t to_reg(const struct rtc_regs *r, unsigned int v)
{
	if (r->ram[REG_B] & REG_B_BIN)
		return (uint8_t)v;
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static unsigned int from_reg(const struct rtc_regs *r, uint8_t v)
{
	if (r->ram[REG_B] & REG_B_BIN)
		return v;
	return (v >> 4) * 10 + (v & 0xf);
}

static void rtc_now(const struct rtc_regs *r, struct tm *tm)
{
	time_t t = time(NULL) + r->offset;

	gmtime_r(&t, tm);
}

static uint8_t rtc_read(struct rtc_regs *r, unsigned int idx)
{
	struct tm tm;

	rtc_now(r, &tm);
	switch (idx) {
	case 0x00:
		return to_reg(r, (unsigned int)tm.tm_sec);
	case 0x02:
		return to_reg(r, (unsigned int)tm.tm_min);
	case 0x04:
		return to_reg(r, (unsigned int)tm.tm_hour);
	case 0x06:
		return to_reg(r, (unsigned int)tm.tm_wday + 1);
	case 0x07:
		return to_reg(r, (unsigned int)tm.tm_mday);
	case 0x08:
		return to_reg(r, (unsigned int)tm.tm_mon + 1);
	case 0x09:
		return to_reg(r, (unsigned int)tm.tm_year % 100);
	case REG_CENTURY:
		return to_reg(r, (unsigned int)(tm.tm_year + 1900) / 100);
	case REG_A:
		return r->ram[REG_A] & 0x7f; /* never "update in progress" */
	case REG_C:
		return 0;
	case REG_D:
		return 0x80; /* battery good */
	default:
		return r->ram[idx];
	}
}

/* A write to a time register moves the clock offset. */
static void rtc_write(struct rtc_regs *r, unsigned int idx, uint8_t v)
{
	struct tm tm;
	time_t t;

	if (idx != 0 && idx != 2 && idx != 4 && idx != 7 && idx != 8 &&
	    idx != 9) {
		if (idx != REG_C && idx != REG_D)
			r->ram[idx] = v;
		return;
	}
	rtc_now(r, &tm);
	switch (idx) {
	case 0:
		tm.tm_sec = (int)from_reg(r, v);
		break;
	case 2:
		tm.tm_min = (int)from_reg(r, v);
		break;
	case 4:
		tm.tm_hour = (int)from_reg(r, v);
		break;
	case 7:
		tm.tm_mday = (int)from_reg(r, v);
		break;
	case 8:
		tm.tm_mon = (int)from_reg(r, v) - 1;
		break;
	default:
		tm.tm_year = (tm.tm_year / 100) * 100 + (int)from_reg(r, v);
		break;
	}
	t = timegm(&tm);
	if (t != (time_t)-1)
		r->offset = (int64_t)(t - time(NULL));
}

static int rtc_io(struct vcpu *vcpu __unused, uint64_t addr, void *data,
		  uint32_t len, bool is_write, void *opaque)
{
	struct rtc *rtc = opaque;
	uint8_t *v = data;

	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return VCPU_CONTINUE;
	}
	pthread_mutex_lock(&rtc->lock);
	if (addr == RTC_PORT) {
		if (is_write)
			rtc->r.index = *v & 0x7f; /* bit 7: NMI mask */
		else
			*v = 0xff;
	} else if (is_write) {
		rtc_write(&rtc->r, rtc->r.index, *v);
	} else {
		*v = rtc_read(&rtc->r, rtc->r.index);
	}
	pthread_mutex_unlock(&rtc->lock);
	return VCPU_CONTINUE;
}

static void rtc_reset(struct dev *dev)
{
	struct rtc *rtc = container_of(dev, struct rtc, dev);

	pthread_mutex_lock(&rtc->lock);
	rtc->r.index = 0;
	rtc->r.ram[REG_A] = 0x26;
	rtc->r.ram[REG_B] = REG_B_24H;
	pthread_mutex_unlock(&rtc->lock);
}

static int rtc_init(struct vm *vm, const char *conf __unused, struct dev **out)
{
	struct rtc *rtc = calloc(1, sizeof(*rtc));
	int ret;

	if (!rtc)
		return -ENOMEM;
	rtc->dev.vm = vm;
	rtc->dev.ops = &rtc_ops;
	pthread_mutex_init(&rtc->lock, NULL);
	rtc->r.ram[REG_A] = 0x26;
	rtc->r.ram[REG_B] = REG_B_24H;
	ret = iotrap_register(vm_pio(vm), RTC_PORT, 2, rtc_io, rtc);
	if (ret < 0) {
		pthread_mutex_destroy(&rtc->lock);
		free(rtc);
		return ret;
	}
	*out = &rtc->dev;
	return 0;
}

static void rtc_fini(struct dev *dev)
{
	struct rtc *rtc = container_of(dev, struct rtc, dev);

	if (iotrap_unregister(vm_pio(dev->vm), RTC_PORT) < 0)
		pr_warn("rtc: ports were not registered");
	pthread_mutex_destroy(&rtc->lock);
	free(rtc);
}

static int rtc_save(struct dev *dev, void *buf, size_t len)
{
	struct rtc *rtc = container_of(dev, struct rtc, dev);
	Vmrun__RtcState m = VMRUN__RTC_STATE__INIT;
	struct rtc_regs r;

	pthread_mutex_lock(&rtc->lock);
	r = rtc->r;
	pthread_mutex_unlock(&rtc->lock);
	m.index = r.index;
	m.ram.data = r.ram;
	m.ram.len = sizeof(r.ram);
	m.offset = r.offset;
	return dev_state_pack(&m.base, buf, len);
}

static int rtc_load(struct dev *dev, const void *buf, size_t len)
{
	struct rtc *rtc = container_of(dev, struct rtc, dev);
	Vmrun__RtcState *m = vmrun__rtc_state__unpack(NULL, len, buf);
	struct rtc_regs r;
	int ret = -EINVAL;

	if (!m)
		return -EINVAL;
	if (m->index > 0x7f || m->ram.len != sizeof(r.ram))
		goto out;
	r.index = (uint8_t)m->index;
	memcpy(r.ram, m->ram.data, sizeof(r.ram));
	r.offset = m->offset;
	pthread_mutex_lock(&rtc->lock);
	rtc->r = r;
	pthread_mutex_unlock(&rtc->lock);
	ret = 0;
out:
	vmrun__rtc_state__free_unpacked(m, NULL);
	return ret;
}

const struct dev_ops rtc_ops = {
	.name = "rtc",
	.state_type = "vmrun.RtcState",
	.init = rtc_init,
	.fini = rtc_fini,
	.reset = rtc_reset,
	.save = rtc_save,
	.load = rtc_load,
};

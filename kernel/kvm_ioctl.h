/* SPDX-License-Identifier: MIT */
#ifndef VMM_KERNEL_KVM_IOCTL_H
#define VMM_KERNEL_KVM_IOCTL_H

/*
 * The only callers of ioctl() in the project. Each wrapper returns the
 * ioctl's non-negative result or -errno, so callers follow the project's
 * 0 / -errno convention without touching errno.
 */

#include <errno.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

static inline int kvm_ioctl(int fd, unsigned long req, void *arg)
{
	int ret = ioctl(fd, req, arg);

	return ret < 0 ? -errno : ret;
}

static inline int kvm_ioctl_val(int fd, unsigned long req, unsigned long arg)
{
	int ret = ioctl(fd, req, arg);

	return ret < 0 ? -errno : ret;
}

static inline int kvm_check_cap(int fd, long cap)
{
	return kvm_ioctl_val(fd, KVM_CHECK_EXTENSION, (unsigned long)cap);
}

static inline int kvm_enable_cap(int fd, uint32_t cap, uint64_t arg0)
{
	struct kvm_enable_cap ec = { .cap = cap, .args = { arg0 } };

	return kvm_ioctl(fd, KVM_ENABLE_CAP, &ec);
}

#endif /* VMM_KERNEL_KVM_IOCTL_H */

/* SPDX-License-Identifier: MIT */
#include "kernel/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "kernel/dirty.h"
#include "kernel/iotrap.h"
#include "kernel/kvm_ioctl.h"
#include "kernel/mem.h"
#include "kernel/util/log.h"
#include "kernel/vm_priv.h"

const char *vm_exit_reason_str(enum vm_exit_reason r)
{
	static const char *const names[] = {
		[VM_EXIT_NONE] = "running",
		[VM_EXIT_REQUESTED] = "stopped by request",
		[VM_EXIT_POWEROFF] = "guest powered off",
		[VM_EXIT_RESET] = "guest requested reset",
		[VM_EXIT_SHUTDOWN] = "guest triple fault (shutdown)",
		[VM_EXIT_INTERNAL] = "KVM internal error",
		[VM_EXIT_ERROR] = "VMM error",
	};

	if ((unsigned int)r >= ARRAY_SIZE(names))
		return "unknown";
	return names[r];
}

/*
 * Capabilities the core cannot work without. Each missing one is named in
 * the error, so a user on an old or unusual host knows what to look for.
 */
static const struct {
	long cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_NR_MEMSLOTS, "KVM_CAP_NR_MEMSLOTS" },
};

static int check_caps(struct vm *vm)
{
	unsigned int i;
	int v;

	for (i = 0; i < ARRAY_SIZE(required_caps); i++) {
		if (kvm_check_cap(vm->kvm_fd, required_caps[i].cap) <= 0) {
			pr_err("KVM lacks %s, which vmrun requires",
			       required_caps[i].name);
			return -ENOTSUP;
		}
	}
	if (vm->cfg.dirty == DIRTY_MODE_LOG) {
		v = kvm_check_cap(vm->kvm_fd,
				  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
		if (v <= 0 || !(v & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
			pr_err("KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, needed for dirty-log mode");
			return -ENOTSUP;
		}
	} else {
		if (kvm_check_cap(vm->kvm_fd, KVM_CAP_DIRTY_LOG_RING_ACQ_REL) <=
			    0 &&
		    kvm_check_cap(vm->kvm_fd, KVM_CAP_DIRTY_LOG_RING) <= 0) {
			pr_err("KVM lacks KVM_CAP_DIRTY_LOG_RING, needed for dirty-ring mode");
			return -ENOTSUP;
		}
	}
	v = kvm_check_cap(vm->kvm_fd, KVM_CAP_MAX_VCPUS);
	if (v > 0 && vm->cfg.nr_vcpus > (unsigned int)v) {
		pr_err("KVM allows at most %d vCPUs, %u asked", v,
		       vm->cfg.nr_vcpus);
		return -EINVAL;
	}
	return 0;
}

/* Enables the dirty-tracking mode; must precede vCPU creation. */
static int enable_dirty_mode(struct vm *vm)
{
	int max, ret;
	uint32_t bytes;

	if (vm->cfg.dirty == DIRTY_MODE_LOG) {
		uint64_t flags = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;

		if (kvm_check_cap(vm->kvm_fd,
				  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) &
		    KVM_DIRTY_LOG_INITIALLY_SET)
			flags |= KVM_DIRTY_LOG_INITIALLY_SET;
		ret = kvm_enable_cap(vm->vm_fd,
				     KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, flags);
		if (ret < 0)
			pr_err("enabling KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: %s",
			       strerror(-ret));
		return ret;
	}

	if (!vm->cfg.dirty_ring_size)
		vm->cfg.dirty_ring_size = 4096;
	if (vm->cfg.dirty_ring_size & (vm->cfg.dirty_ring_size - 1)) {
		pr_err("dirty ring size %u is not a power of two",
		       vm->cfg.dirty_ring_size);
		return -EINVAL;
	}
	bytes = vm->cfg.dirty_ring_size * sizeof(struct kvm_dirty_gfn);
	max = kvm_check_cap(vm->vm_fd, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
	if (max > 0) {
		if (bytes > (uint32_t)max)
			bytes = (uint32_t)max;
		ret = kvm_enable_cap(vm->vm_fd, KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
				     bytes);
	} else {
		max = kvm_check_cap(vm->vm_fd, KVM_CAP_DIRTY_LOG_RING);
		if (bytes > (uint32_t)max)
			bytes = (uint32_t)max;
		ret = kvm_enable_cap(vm->vm_fd, KVM_CAP_DIRTY_LOG_RING, bytes);
	}
	if (ret < 0) {
		pr_err("enabling the dirty ring (%u bytes): %s", bytes,
		       strerror(-ret));
		return ret;
	}
	vm->cfg.dirty_ring_size = bytes / sizeof(struct kvm_dirty_gfn);
	return 0;
}

int vm_create(const struct vm_config *cfg, struct vm **out)
{
	struct vm *vm;
	unsigned int i;
	int ret;

	if (!cfg->nr_vcpus || cfg->nr_vcpus > VM_MAX_VCPUS) {
		pr_err("vCPU count %u out of range 1..%d", cfg->nr_vcpus,
		       VM_MAX_VCPUS);
		return -EINVAL;
	}
	ret = vcpu_signal_init();
	if (ret < 0)
		return ret;

	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->cfg = *cfg;
	vm->vm_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->dirty_lock, NULL);
	pthread_cond_init(&vm->cond, NULL);

	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0) {
		ret = -errno;
		goto err_free;
	}
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		pr_err("cannot open /dev/kvm: %s", strerror(-ret));
		goto err_efd;
	}
	ret = kvm_ioctl_val(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (ret != KVM_API_VERSION) {
		pr_err("KVM API version %d, vmrun needs %d", ret,
		       KVM_API_VERSION);
		ret = -ENOTSUP;
		goto err_kvm;
	}
	ret = check_caps(vm);
	if (ret < 0)
		goto err_kvm;
	ret = kvm_ioctl_val(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (ret < 0) {
		pr_err("KVM_CREATE_VM: %s", strerror(-ret));
		goto err_kvm;
	}
	vm->vm_fd = ret;
	ret = vm_mem_create(vm, &vm->mem);
	if (ret < 0)
		goto err_vm;
	ret = iotrap_create(IOTRAP_PIO, &vm->pio);
	if (ret < 0)
		goto err_mem;
	ret = iotrap_create(IOTRAP_MMIO, &vm->mmio);
	if (ret < 0)
		goto err_pio;
	ret = enable_dirty_mode(vm);
	if (ret < 0)
		goto err_mmio;
	ret = vm_arch_init(vm);
	if (ret < 0)
		goto err_mmio;
	for (i = 0; i < cfg->nr_vcpus; i++) {
		ret = vcpu_create(vm, i, &vm->vcpus[i]);
		if (ret < 0)
			goto err_vcpus;
		vm->nr_vcpus++;
	}
	*out = vm;
	return 0;

err_vcpus:
	while (vm->nr_vcpus)
		vcpu_destroy(vm->vcpus[--vm->nr_vcpus]);
err_mmio:
	iotrap_destroy(vm->mmio);
err_pio:
	iotrap_destroy(vm->pio);
err_mem:
	vm_mem_destroy(vm->mem);
err_vm:
	close(vm->vm_fd);
err_kvm:
	close(vm->kvm_fd);
err_efd:
	close(vm->stop_efd);
err_free:
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->dirty_lock);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
	return ret;
}

static void join_threads(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *vcpu = vm->vcpus[i];

		if (vcpu->thread_started) {
			pthread_join(vcpu->thread, NULL);
			vcpu->thread_started = false;
		}
	}
}

void vm_destroy(struct vm *vm)
{
	unsigned int i;

	if (!vm)
		return;
	vm_throttle_destroy(vm);
	vm_stop(vm, VM_EXIT_REQUESTED);
	join_threads(vm);
	for (i = 0; i < vm->nr_vcpus; i++)
		vcpu_destroy(vm->vcpus[i]);
	vm_mem_destroy(vm->mem);
	iotrap_destroy(vm->mmio);
	iotrap_destroy(vm->pio);
	free(vm->dirty_scratch);
	close(vm->vm_fd);
	close(vm->kvm_fd);
	close(vm->stop_efd);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->dirty_lock);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}

int vm_start(struct vm *vm)
{
	unsigned int i;
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->started) {
		pthread_mutex_unlock(&vm->lock);
		return -EALREADY;
	}
	vm->started = true;
	pthread_mutex_unlock(&vm->lock);
	for (i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu_thread_start(vm->vcpus[i]);
		if (ret < 0) {
			pr_err("starting vCPU %u: %s", i, strerror(-ret));
			vm_stop_detail(vm, VM_EXIT_ERROR,
				       "could not start vCPU thread %u", i);
			join_threads(vm);
			return ret;
		}
	}
	return 0;
}

/* Kicks every vCPU but the caller's own (which is outside KVM_RUN). */
static void kick_all(struct vm *vm)
{
	struct vcpu *self = vcpu_self();
	unsigned int i;

	for (i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i] != self)
			vcpu_kick(vm->vcpus[i]);
}

/*
 * 1 if the caller is a vCPU thread of @vm inside an exit handler: it is
 * outside KVM_RUN and counts as parked for a pause it asks for itself
 * (a fuzzer saving the state of a crash from the harness handler).
 */
static unsigned int self_unparked(const struct vm *vm)
{
	struct vcpu *self = vcpu_self();

	return self && self->vm == vm && !self->parked;
}

int vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->stopping && !vm->nr_threads) {
		/* Nothing runs any more: state is as frozen as it gets. */
		vm->pause_depth++;
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	vm->pause_depth++;
	__atomic_store_n(&vm->yield, true, __ATOMIC_SEQ_CST);
	/* Kick under the lock: a vCPU cannot park before seeing the flag. */
	kick_all(vm);
	while (vm->nr_parked + self_unparked(vm) < vm->nr_threads)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->pause_depth && --vm->pause_depth == 0) {
		if (!vm->stopping)
			__atomic_store_n(&vm->yield, false, __ATOMIC_SEQ_CST);
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
}

/*
 * A pause is in force and every vCPU thread is parked under it. Parked
 * threads alone are not enough: once the pause is lifted they may run
 * before they have woken to say so.
 */
static bool paused_locked(const struct vm *vm)
{
	return vm->pause_depth > 0 &&
	       vm->nr_parked + self_unparked(vm) == vm->nr_threads;
}

/*
 * True while some vCPU thread may be inside KVM_RUN: memory maps and vCPU
 * state must not change then.
 */
bool vm_vcpus_may_run(struct vm *vm)
{
	bool busy;

	/* A lone vCPU's own thread, inside an exit handler, holds it. */
	if (vm->nr_vcpus == 1 && vcpu_self() == vm->vcpus[0])
		return false;
	pthread_mutex_lock(&vm->lock);
	busy = vm->nr_threads && !paused_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	return busy;
}

bool vm_is_paused(struct vm *vm)
{
	bool p;

	pthread_mutex_lock(&vm->lock);
	p = paused_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	return p;
}

bool vm_yield_pending(struct vm *vm)
{
	return __atomic_load_n(&vm->yield, __ATOMIC_ACQUIRE);
}

static void stop_locked(struct vm *vm, enum vm_exit_reason reason)
{
	uint64_t one = 1;

	if (vm->reason == VM_EXIT_NONE)
		vm->reason = reason;
	if (!vm->stopping && write(vm->stop_efd, &one, sizeof(one)) < 0)
		pr_warn("vm: stop eventfd: %s", strerror(errno));
	vm->stopping = true;
	__atomic_store_n(&vm->yield, true, __ATOMIC_SEQ_CST);
	kick_all(vm);
	pthread_cond_broadcast(&vm->cond);
}

void vm_stop(struct vm *vm, enum vm_exit_reason reason)
{
	pthread_mutex_lock(&vm->lock);
	stop_locked(vm, reason);
	pthread_mutex_unlock(&vm->lock);
}

void vm_stop_detail(struct vm *vm, enum vm_exit_reason reason, const char *fmt,
		    ...)
{
	va_list ap;

	pthread_mutex_lock(&vm->lock);
	if (vm->reason == VM_EXIT_NONE) {
		va_start(ap, fmt);
		vsnprintf(vm->detail, sizeof(vm->detail), fmt, ap);
		va_end(ap);
	}
	stop_locked(vm, reason);
	pthread_mutex_unlock(&vm->lock);
}

void vm_set_guest_stop_hook(struct vm *vm, vm_guest_stop_fn_t fn, void *opaque)
{
	pthread_mutex_lock(&vm->lock);
	vm->guest_stop_fn = fn;
	vm->guest_stop_opaque = opaque;
	pthread_mutex_unlock(&vm->lock);
}

int vm_guest_stop(struct vcpu *vcpu, enum vm_exit_reason reason,
		  const char *fmt, ...)
{
	struct vm *vm = vcpu->vm;
	vm_guest_stop_fn_t fn;
	char detail[sizeof(vm->detail)];
	va_list ap;
	void *opaque;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&vm->lock);
	fn = vm->guest_stop_fn;
	opaque = vm->guest_stop_opaque;
	pthread_mutex_unlock(&vm->lock);
	if (fn && fn(vcpu, reason, detail, opaque))
		return VCPU_CONTINUE;
	vm_stop_detail(vm, reason, "%s", detail);
	return VCPU_STOP;
}

enum vm_exit_reason vm_wait(struct vm *vm, int timeout_ms)
{
	enum vm_exit_reason r;
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (timeout_ms >= 0) {
		ts.tv_sec += timeout_ms / 1000;
		ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&vm->lock);
	while (!vm->stopping) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&vm->cond, &vm->lock);
		} else if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) ==
			   ETIMEDOUT) {
			break;
		}
	}
	r = vm->stopping ? vm->reason : VM_EXIT_NONE;
	pthread_mutex_unlock(&vm->lock);
	if (r != VM_EXIT_NONE)
		join_threads(vm);
	return r;
}

const char *vm_exit_detail(struct vm *vm)
{
	return vm->detail[0] ? vm->detail : vm_exit_reason_str(vm->reason);
}

struct vm_mem *vm_mem(struct vm *vm)
{
	return vm->mem;
}

struct iotrap *vm_pio(struct vm *vm)
{
	return vm->pio;
}

struct iotrap *vm_mmio(struct vm *vm)
{
	return vm->mmio;
}

unsigned int vm_nr_vcpus(const struct vm *vm)
{
	return vm->nr_vcpus;
}

struct vcpu *vm_vcpu(struct vm *vm, unsigned int id)
{
	return id < vm->nr_vcpus ? vm->vcpus[id] : NULL;
}

enum dirty_mode vm_dirty_mode(const struct vm *vm)
{
	return vm->cfg.dirty;
}

int vm_stop_fd(const struct vm *vm)
{
	return vm->stop_efd;
}

int vm_fd(const struct vm *vm)
{
	return vm->vm_fd;
}

int vm_kvm_fd(const struct vm *vm)
{
	return vm->kvm_fd;
}

bool vm_has_irqchip(const struct vm *vm)
{
	return vm->irqchip;
}

int vm_check_cap(struct vm *vm, long cap)
{
	return kvm_check_cap(vm->vm_fd, cap);
}

/* SPDX-License-Identifier: MIT */
#ifndef VMM_KERNEL_VM_H
#define VMM_KERNEL_VM_H

#include <stdbool.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct vm;
struct vcpu;
struct vm_mem;
struct iotrap;

#define VM_MAX_VCPUS 64

enum dirty_mode {
	DIRTY_MODE_LOG,	 /* KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG */
	DIRTY_MODE_RING, /* per-vCPU dirty ring */
};

struct vm_config {
	unsigned int nr_vcpus;	  /* 1..VM_MAX_VCPUS */
	enum dirty_mode dirty;	  /* fixed for the VM's life (KVM's rule) */
	uint32_t dirty_ring_size; /* entries per vCPU; 0 = default 4096 */
	bool no_irqchip;	  /* skip the in-kernel PIC/IOAPIC/LAPIC */
	bool pit;		  /* create the in-kernel PIT */
};

/* Why a VM stopped; vm_wait() returns it. */
enum vm_exit_reason {
	VM_EXIT_NONE,
	VM_EXIT_REQUESTED, /* vm_stop() from the VMM */
	VM_EXIT_POWEROFF,  /* guest asked to power off */
	VM_EXIT_RESET,	   /* guest asked for a reset */
	VM_EXIT_SHUTDOWN,  /* triple fault */
	VM_EXIT_INTERNAL,  /* KVM internal error or failed entry */
	VM_EXIT_ERROR,	   /* VMM-side error */
};

const char *vm_exit_reason_str(enum vm_exit_reason r);

/*
 * Opens /dev/kvm, checks the API version and every capability the project
 * relies on (logging the first one missing by name), creates the VM, its
 * irqchip and its vCPUs (not yet running). Returns 0 or -errno.
 */
int vm_create(const struct vm_config *cfg, struct vm **out) __must_check;

/*
 * Stops and joins the vCPU threads if running, then closes every fd and
 * unmaps everything the VM created. Safe on a VM that never started.
 */
void vm_destroy(struct vm *vm);

/* Starts one thread per vCPU, running KVM_RUN. */
int vm_start(struct vm *vm) __must_check;

/*
 * Freezes every vCPU outside guest mode and waits until each has
 * acknowledged. Pending I/O is completed first, so register state read
 * while paused is consistent. Nests: each pause needs one resume.
 * Returns 0, or -ESHUTDOWN if the VM has stopped.
 */
int vm_pause(struct vm *vm) __must_check;
void vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);

/*
 * Throttles the vCPUs: each is paused @pct percent (at most
 * VM_THROTTLE_MAX) of every VM_THROTTLE_PERIOD_MS, by a thread of its own
 * taking ordinary nested pauses; 0 lets them run freely again. Called
 * from one thread (the owner's); vm_destroy() ends it. 0 or -errno.
 */
#define VM_THROTTLE_PERIOD_MS 20
#define VM_THROTTLE_MAX 99
int vm_throttle(struct vm *vm, unsigned int pct) __must_check;
unsigned int vm_throttle_level(const struct vm *vm);

/* True while a pause or stop waits for vCPUs: long handlers must return. */
bool vm_yield_pending(struct vm *vm);

/* Asks every vCPU thread to finish; records @reason if none is yet. */
void vm_stop(struct vm *vm, enum vm_exit_reason reason);

/* Same, with a one-line detail (see vm_exit_detail()). */
void vm_stop_detail(struct vm *vm, enum vm_exit_reason reason, const char *fmt,
		    ...) __printf(3, 4);

/*
 * A guest event that would stop the VM (power off, reset, triple fault)
 * may be taken by a hook instead: a fuzzer puts the VM back to its
 * checkpoint. The hook runs in the thread of the vCPU that caused the
 * event and returns true if it took it.
 */
typedef bool (*vm_guest_stop_fn_t)(struct vcpu *vcpu,
				   enum vm_exit_reason reason,
				   const char *detail, void *opaque);
void vm_set_guest_stop_hook(struct vm *vm, vm_guest_stop_fn_t fn, void *opaque);

/*
 * For exit and device handlers: the guest asked to stop. Returns
 * VCPU_CONTINUE if the hook took the event, else stops the VM with
 * @reason and the detail and returns VCPU_STOP.
 */
int vm_guest_stop(struct vcpu *vcpu, enum vm_exit_reason reason,
		  const char *fmt, ...) __printf(3, 4);

/* An eventfd that becomes readable once the VM is asked to stop. */
int vm_stop_fd(const struct vm *vm);

/*
 * Waits until the VM stops (by vm_stop() or a guest event), or
 * @timeout_ms passes (-1 = forever). Returns the reason, or VM_EXIT_NONE on
 * timeout.
 */
enum vm_exit_reason vm_wait(struct vm *vm, int timeout_ms);

/* A one-line description of why the VM stopped, for messages. */
const char *vm_exit_detail(struct vm *vm);

struct vm_mem *vm_mem(struct vm *vm);
struct iotrap *vm_pio(struct vm *vm);
struct iotrap *vm_mmio(struct vm *vm);
unsigned int vm_nr_vcpus(const struct vm *vm);
struct vcpu *vm_vcpu(struct vm *vm, unsigned int id);
enum dirty_mode vm_dirty_mode(const struct vm *vm);
int vm_fd(const struct vm *vm);
int vm_kvm_fd(const struct vm *vm);
bool vm_has_irqchip(const struct vm *vm);

/* KVM_CHECK_EXTENSION on the VM; < 0 or 0 means absent. */
int vm_check_cap(struct vm *vm, long cap);

#endif /* VMM_KERNEL_VM_H */

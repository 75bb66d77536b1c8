/* SPDX-License-Identifier: MIT */
#ifndef VMM_KERNEL_VM_PRIV_H
#define VMM_KERNEL_VM_PRIV_H

/* Internal structures of the core, shared by vm.c vcpu.c mem.c dirty.c. */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "kernel/vm.h"
#include "kernel/vcpu.h"
#include "kernel/x86/vcpu_arch.h"

struct vm_mem;
struct mem_map;
struct ring_held_set;

/*
 * Locking legend:
 * [I] immutable after create   [a] atomic   [v] owning vCPU thread only
 * [l] vm->lock                 [r] vcpu->ring_lock
 * [d] vm->dirty_lock
 * [F] writes need all vCPUs frozen (or not started)
 * [o] the VM's owner thread only (the one calling vm_throttle())
 */

struct vcpu {
	struct vm *vm;	     /* [I] */
	unsigned int id;     /* [I] */
	int fd;		     /* [I] */
	struct kvm_run *run; /* [v] (immediate_exit: [a]) */
	size_t run_size;     /* [I] */
	pthread_t thread;    /* [I] after start */
	bool thread_started; /* [l] */
	bool parked;	     /* [l] acknowledged the pause */
	bool io_pending;     /* [v] last exit needs a KVM_RUN to finish */
	bool exited_in_io;   /* [v] the last KVM_RUN ended in I/O or MMIO */
	uint64_t exit_sets;  /* [v] kvm_valid_regs at the last exit */
	bool running;	     /* [a] inside KVM_RUN (for ring kicks) */
	uint64_t run_seq;    /* [a] KVM_RUN calls that returned */

	/* Dirty ring, ring mode only. */
	struct kvm_dirty_gfn *ring; /* [I] mmap of the vCPU's ring */
	uint32_t ring_entries;	    /* [I] */
	uint32_t ring_fetch;	    /* [r] next entry to harvest */
	uint32_t ring_held;	    /* [r] first harvested entry not yet
				     * given back to KVM (dirty_hold()) */
	uint32_t ring_hold_base;    /* [r] pages held one sync after the
				     * last give-back */
	struct ring_held_set *held; /* [r] the held entries' pages, once
				     * each (kernel/dirty.c) */
	pthread_mutex_t ring_lock;

	struct vcpu_stats stats; /* [a] */
	vcpu_kick_fn_t kick_fn;	 /* [v] after start */
	void *kick_opaque;	 /* [v] */
	struct vcpu_arch arch;	 /* [v] or [F] */
};

struct vm {
	int kvm_fd;			  /* [I] */
	int vm_fd;			  /* [I] */
	struct vm_config cfg;		  /* [I] */
	bool irqchip;			  /* [I] */
	struct vm_mem *mem;		  /* [I] */
	struct iotrap *pio;		  /* [I] */
	struct iotrap *mmio;		  /* [I] */
	unsigned int nr_vcpus;		  /* [I] */
	struct vcpu *vcpus[VM_MAX_VCPUS]; /* [I] */

	pthread_mutex_t lock;
	pthread_cond_t cond;	    /* any change to the fields below */
	unsigned int pause_depth;   /* [l] */
	unsigned int nr_parked;	    /* [l] */
	unsigned int nr_threads;    /* [l] vCPU threads alive */
	bool started;		    /* [l] */
	bool stopping;		    /* [l] (also read [a] by vCPU threads) */
	bool yield;		    /* [a] pause or stop pending */
	enum vm_exit_reason reason; /* [l] */
	char detail[256];	    /* [l] */
	int stop_efd;		    /* [I] written once on stop */

	bool dirty_on;		    /* [d] tracking active */
	bool dirty_hold;	    /* [d] dirty_hold() */
	pthread_mutex_t dirty_lock; /* [d] serializes dirty_sync/start/stop */
	uint64_t *dirty_scratch;    /* [d] KVM_GET_DIRTY_LOG buffer */
	size_t dirty_scratch_words; /* [d] */
	vm_guest_stop_fn_t guest_stop_fn; /* [l] */
	void *guest_stop_opaque;	  /* [l] */
	struct throttle *throttle;	  /* [o] vm_throttle()'s, or NULL */
};

/* vm.c */
bool vm_vcpus_may_run(struct vm *vm);

/* throttle.c */
void vm_throttle_destroy(struct vm *vm);

/* vcpu.c */
int vcpu_create(struct vm *vm, unsigned int id, struct vcpu **out);
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_thread_start(struct vcpu *vcpu);
void vcpu_kick(struct vcpu *vcpu);
int vcpu_signal_init(void);

/* mem.c */
int vm_mem_create(struct vm *vm, struct vm_mem **out);
void vm_mem_destroy(struct vm_mem *mem);
/* Re-applies every memslot with or without dirty logging. */
int mem_set_logging(struct vm_mem *mem, bool on);
/* Marks [gpa, gpa + len) dirty in the owning segment; gpa must be mapped. */
void mem_mark_dirty(struct vm_mem *mem, uint64_t gpa, size_t len);
/* Batch access for dirty harvesting: hold the read lock across calls. */
void mem_rdlock(struct vm_mem *mem);
void mem_unlock(struct vm_mem *mem);
struct mem_map *mem_slot_map_locked(struct vm_mem *mem, uint32_t slot);
unsigned int mem_nr_maps_locked(struct vm_mem *mem);
struct mem_map *mem_map_at_locked(struct vm_mem *mem, unsigned int i);
bool mem_map_logging(const struct mem_map *map);
/* Marks page @page of the map (counted from the map's start). */
void mem_map_mark_page(struct mem_map *map, uint64_t page);
/* ORs a slot-sized KVM dirty bitmap into the map's segment bitmap. */
void mem_map_or_bitmap(struct mem_map *map, const uint64_t *bits);
void mem_mark_all_dirty(struct vm_mem *mem);

/* dirty.c: frees what a vCPU's held dirty-ring entries needed. */
void dirty_vcpu_free(struct vcpu *vcpu);

/* exit handlers, vcpu_exit.c */
int vcpu_handle_exit(struct vcpu *vcpu);

#endif /* VMM_KERNEL_VM_PRIV_H */

/* SPDX-License-Identifier: MIT */
#ifndef VMM_KERNEL_MACHINE_H
#define VMM_KERNEL_MACHINE_H

/*
 * The x86-64 machine vmrun runs: RAM as one segment mapped below 3 GiB
 * and (the rest) from 4 GiB, the platform devices in dev_table order, a
 * guest kernel, and the event loop that serves console input, network
 * back ends and signals while the vCPUs run. See kernel/x86/vmrun_boot.h
 * for the addresses.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"
#include "kernel/vm.h"

struct dev;
struct machine;
struct mem_seg;

#define MACHINE_MAX_DISKS 4
#define MACHINE_MAX_NETS 4
#define MACHINE_MAX_CPUS 16

struct machine_config {
	uint64_t mem; /* bytes, a multiple of 2 MiB */
	unsigned int cpus;
	const void *kernel; /* image bytes (borrowed) */
	size_t kernel_size;
	const char *kernel_name; /* for messages */
	const char *cmdline;
	/* A Linux initramfs for a bzImage or PVH kernel (borrowed), or NULL. */
	const void *initrd;
	size_t initrd_size;
	const char *initrd_name; /* for messages */
	const char *console;	 /* "stdio", "file:PATH" or "none" */
	const char *disks[MACHINE_MAX_DISKS];
	unsigned int nr_disks;
	const char *nets[MACHINE_MAX_NETS]; /* --net specs */
	unsigned int nr_nets;
	bool rng;
	enum dirty_mode dirty;
	uint32_t dirty_ring_size; /* entries per vCPU; 0: the VM's default */
	/* If non-zero: track dirty pages from the start and harvest (sync
	 * and take, discarding) every this many ms, as a pre-copy migration
	 * would; for measuring what tracking costs a running guest. */
	unsigned int track_ms;
	/* No kernel: RAM stays zero and the vCPUs unset, for a restore that
	 * loads memory and state from an image before machine_run(). */
	bool restore;
	/* With restore: RAM starts as this memfd's contents, copy-on-write
	 * (fuzzing VMs sharing one checkpoint's memory). */
	bool ram_cow;
	int ram_cow_fd;
};

/*
 * Builds the machine; on failure returns -errno with a one-line reason in
 * @err, and nothing is left behind.
 */
int machine_create(const struct machine_config *cfg, struct machine **out,
		   char *err, size_t errlen) __must_check;

/*
 * Starts the vCPUs and serves events until the VM stops or SIGINT or
 * SIGTERM arrives (which stops it cleanly). Returns why it stopped;
 * *@signo is set to the signal, if one ended it.
 */
enum vm_exit_reason machine_run(struct machine *m, int *signo);

void machine_destroy(struct machine *m);

/*
 * Extra event sources for the loop (the control socket and its
 * connections). @fn runs in the event-loop thread when @fd is readable
 * (level-triggered). May be called before machine_run() or from inside a
 * callback. Returns 0 or -errno.
 */
typedef void (*machine_fd_fn_t)(struct machine *m, int fd, void *opaque);
int machine_watch_fd(struct machine *m, int fd, machine_fd_fn_t fn,
		     void *opaque) __must_check;
void machine_unwatch_fd(struct machine *m, int fd);

/*
 * One pass of machine_run()'s loop from inside a callback that runs long
 * on the loop's own thread (a migration): waits up to @timeout_ms for
 * events and handles them as the loop does (network back ends, watched
 * fds, console input, signals, which stop the VM); the loop itself ends
 * only once the callback has returned. Not nested: a call from inside a
 * callback it runs handles nothing. Returns true if the VM is stopping.
 */
bool machine_poll(struct machine *m, int timeout_ms);

/* After a migration: each network card announces the guest's MAC on its
 * back end (RARP), so that the network learns where it lives now.
 * Returns the cards that did. */
unsigned int machine_announce(struct machine *m);

struct vm *machine_vm(struct machine *m);

/*
 * What the machine was built from, as kept by the machine (strings are
 * its own copies; no kernel): what a snapshot records to rebuild it.
 */
const struct machine_config *machine_config(const struct machine *m);

/* The devices, in dev_table order (the snapshot order). */
unsigned int machine_nr_devs(const struct machine *m);
struct dev *machine_dev(struct machine *m, unsigned int i);

/* The RAM segment. */
struct mem_seg *machine_ram(struct machine *m);

/* The fuzzing harness ports (kernel/dev/harness.h). */
struct harness;
struct harness *machine_harness(struct machine *m);

/* From now on the RAM bitmap is kept for its owner (a checkpoint): the
 * --track-dirty harvests sync but do not drop it. */
void machine_dirty_keep(struct machine *m);

/*
 * A second owner of the RAM's dirty pages (a checkpoint): what an
 * incremental save's epoch takes (machine_dirty_collect()) is also ORed
 * into @bits (one bit per RAM page) and *@any set, so a later reset still
 * sees it. NULL, NULL: none. With the machine frozen.
 */
void machine_dirty_share(struct machine *m, uint64_t *bits, bool *any);
/* Ends machine_dirty_share() if @bits is still the one registered. */
void machine_dirty_unshare(struct machine *m, const uint64_t *bits);

/*
 * A loader that goes on filling RAM while the vCPUs run (a lazy
 * restore). machine_destroy() calls @release once no vCPU or device
 * thread can touch guest memory any more, before the RAM goes;
 * machine_mem_wait() calls @wait, which returns once RAM is complete
 * (what a save needs before it reads it), or -EIO if it never will be.
 * One per machine.
 */
struct machine_loader {
	int (*wait)(void *opaque); /* 0, or -EIO: memory cannot be whole */
	/* True while loading, with pages loaded of @total so far. */
	bool (*progress)(void *opaque, uint64_t *done, uint64_t *total);
	void (*release)(void *opaque);
	void *opaque;
};
void machine_set_loader(struct machine *m, const struct machine_loader *l);
int machine_mem_wait(struct machine *m) __must_check;
/* True while a loader is still filling RAM; see machine_loader. */
bool machine_mem_loading(struct machine *m, uint64_t *done, uint64_t *total);

/*
 * Quiesces the machine for a consistent capture: pauses every vCPU
 * (vm_pause()), then every device (timers, back-end I/O). Nests.
 * machine_thaw() undoes one machine_freeze().
 */
int machine_freeze(struct machine *m) __must_check;
void machine_thaw(struct machine *m);

/*
 * For incremental saves, with the machine frozen: moves into @bitmap (one
 * bit per RAM page) every RAM page written since the last call, by the
 * guest or the VMM, and begins a new epoch. The first call starts dirty
 * tracking if it is off (every page then counts as written). From then
 * on tracking stays on, and --track-dirty harvests keep the pages for the
 * next call. machine_dirty_return() gives them back after a save that
 * failed, so the next call still sees them.
 */
int machine_dirty_collect(struct machine *m, uint64_t *bitmap) __must_check;
void machine_dirty_return(struct machine *m, const uint64_t *bitmap);

/* Before machine_run(): begins the first epoch of a machine (a restored
 * one, whose memory is its image's): the next collect returns what it
 * wrote since. */
int machine_dirty_begin(struct machine *m) __must_check;

#endif /* VMM_KERNEL_MACHINE_H */

/* SPDX-License-Identifier: MIT */
#ifndef VMM_KERNEL_MACHINE_PRIV_H
#define VMM_KERNEL_MACHINE_PRIV_H

/*
 * The machine's insides, shared by machine.c (building it, its devices,
 * booting) and machine_loop.c (its event loop, dirty harvests, watched
 * fds). Nothing outside kernel/ includes this.
 */

#include <stdbool.h>
#include <stdint.h>

#include "kernel/machine.h"
#include "kernel/x86/vmrun_boot.h"

struct dev;
struct netif;
struct harness;
struct mem_seg;

#define MACHINE_MAX_DEVS 32
#define MACHINE_MAX_WATCH 32

struct machine {
	struct vm *vm;
	struct mem_seg *ram;
	uint64_t ram_low, ram_high;
	struct dev *devs[MACHINE_MAX_DEVS]; /* in dev_table order */
	unsigned int nr_devs;
	struct dev *serial;
	struct dev *nets[MACHINE_MAX_NETS];
	struct netif *netifs[MACHINE_MAX_NETS];
	unsigned int nr_nets;
	int ep; /* the event loop's epoll fd */
	/* While machine_run()'s loop runs: its signalfd and where it says
	 * which signal stopped the VM (machine_poll() needs both). */
	int loop_sfd;
	int *loop_signo;
	bool polling; /* inside machine_poll() */
	struct {
		int fd; /* -1: free */
		machine_fd_fn_t fn;
		void *opaque;
	} watch[MACHINE_MAX_WATCH];
	unsigned int track_ms;
	int track_fd;		 /* timerfd, or -1 */
	uint64_t *track_scratch; /* bitmap the size of the RAM segment */
	bool dirty_keep; /* the RAM bitmap is kept for machine_dirty_collect() */
	int net_wake_efd; /* written by devices: watch back ends again */
	bool net_paused[MACHINE_MAX_NETS]; /* event loop only */
	struct vmrun_boot_info boot;
	bool stdin_console;
	struct machine_config cfg; /* strings owned (cfg_free()) */
	unsigned int freezes;
	struct machine_loader loader; /* .release NULL: none */
	struct harness *harness;
	uint64_t *dirty_share; /* a checkpoint's: gets what a save takes */
	bool *dirty_share_any;
};

#endif /* VMM_KERNEL_MACHINE_PRIV_H */

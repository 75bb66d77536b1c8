/* SPDX-License-Identifier: MIT */
#ifndef VMM_DEV_DEV_H
#define VMM_DEV_DEV_H

/*
 * A device is one file exposing one const struct dev_ops, listed once in
 * dev_table.c. That order is the init order and the snapshot order.
 *
 * Each device keeps all of its guest-visible state in one plain struct
 * that save() copies out and load() writes back whole, as the protobuf
 * message @state_type names (proto/devices.proto); host resources (fds,
 * threads, timers) live beside it and are rebuilt, not saved.
 *
 * load() is two-phase: it validates everything before changing anything,
 * and returns -EINVAL on bad input without touching the device.
 */

#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct vm;
struct dev;

struct dev_ops {
	const char *name;
	/* The message save() writes: "vmrun.SerialState" and so on. */
	const char *state_type;
	/* Creates the device from its @conf string (may be NULL). */
	int (*init)(struct vm *vm, const char *conf, struct dev **out);
	void (*fini)(struct dev *dev);
	/* Back to power-on state (also leaves "needs reset"). */
	void (*reset)(struct dev *dev);
	/* Stop timers and back-end I/O; after pause() state is still. */
	int (*pause)(struct dev *dev);
	int (*resume)(struct dev *dev);
	/* Serialise the state into @buf (size @len); returns bytes or -errno.
	 * With @buf NULL, returns the size needed. */
	int (*save)(struct dev *dev, void *buf, size_t len);
	/* Validate, then commit. */
	int (*load)(struct dev *dev, const void *buf, size_t len);
};

/* Every device embeds this first. */
struct dev {
	const struct dev_ops *ops;
	struct vm *vm;
};

#endif /* VMM_DEV_DEV_H */

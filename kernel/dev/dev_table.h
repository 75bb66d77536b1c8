/* SPDX-License-Identifier: MIT */
#ifndef VMM_DEV_DEV_TABLE_H
#define VMM_DEV_DEV_TABLE_H

#include <stddef.h>

struct dev_ops;

enum dev_kind {
	DEV_KIND_PLATFORM,   /* one instance, no configuration */
	DEV_KIND_SERIAL,     /* one instance, the console spec */
	DEV_KIND_VIRTIO_BLK, /* one per --disk */
	DEV_KIND_VIRTIO_NET, /* one per --net */
	DEV_KIND_VIRTIO_RNG, /* one if enabled */
};

struct dev_table_entry {
	const struct dev_ops *ops;
	enum dev_kind kind;
};

/* The one ordered list of devices: init order and snapshot order. */
extern const struct dev_table_entry dev_table[];
extern const size_t dev_table_len;

#endif /* VMM_DEV_DEV_TABLE_H */

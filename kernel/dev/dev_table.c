/* SPDX-License-Identifier: MIT */
#include "kernel/dev/dev_table.h"

#include "kernel/dev/legacy.h"
#include "kernel/dev/serial.h"
#include "kernel/dev/virtio.h"
#include "kernel/util/compiler.h"

const struct dev_table_entry dev_table[] = {
	{ &serial_ops, DEV_KIND_SERIAL },
	{ &rtc_ops, DEV_KIND_PLATFORM },
	{ &power_ops, DEV_KIND_PLATFORM },
	{ &virtio_blk_dev_ops, DEV_KIND_VIRTIO_BLK },
	{ &virtio_net_dev_ops, DEV_KIND_VIRTIO_NET },
	{ &virtio_rng_dev_ops, DEV_KIND_VIRTIO_RNG },
};

const size_t dev_table_len = ARRAY_SIZE(dev_table);

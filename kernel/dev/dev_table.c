/* SPDX-License-Identifier: MIT */
#include "kernel/dev/dev_table.h"

#include "kernel/dev/legacy.h"
#include "kernel/dev/serial.h"
#include "kernel/util/compiler.h"

const struct dev_table_entry dev_table[] = {
	{ &serial_ops, DEV_KIND_SERIAL },
	{ &rtc_ops, DEV_KIND_PLATFORM },
	{ &power_ops, DEV_KIND_PLATFORM },
};

const size_t dev_table_len = ARRAY_SIZE(dev_table);

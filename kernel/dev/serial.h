/* SPDX-License-Identifier: MIT */
#ifndef VMM_DEV_SERIAL_H
#define VMM_DEV_SERIAL_H

#include <stddef.h>

#include "kernel/dev/dev.h"

extern const struct dev_ops serial_ops;

/* Feeds console input to the guest; returns how many bytes fit. */
size_t serial_rx(struct dev *dev, const void *buf, size_t len);

#endif /* VMM_DEV_SERIAL_H */

/* SPDX-License-Identifier: MIT */
#ifndef VMM_DEV_LEGACY_H
#define VMM_DEV_LEGACY_H

/* The small platform devices: CMOS RTC, power and reset ports. */

#include "kernel/dev/dev.h"

extern const struct dev_ops rtc_ops;
extern const struct dev_ops power_ops;

#endif /* VMM_DEV_LEGACY_H */

/* SPDX-License-Identifier: MIT */
#ifndef VMM_KERNEL_IRQ_H
#define VMM_KERNEL_IRQ_H

/* Interrupt lines into the in-kernel irqchip (PIC + IOAPIC). */

#include <stdbool.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct vm;

/* Sets GSI @gsi to @level (true = asserted). Returns 0 or -errno. */
int irq_line(struct vm *vm, uint32_t gsi, bool level) __must_check;

/*
 * Masks every line of both 8259s, as firmware leaves them for an OS that
 * uses the IOAPIC: a kernel that never programs the PIC (Linux on a
 * hardware-reduced ACPI machine) must not get device interrupts through
 * it, at the PIC's reset vector base 0, as exceptions.
 */
int irq_pic_mask_all(struct vm *vm) __must_check;

/* An edge: assert then deassert. */
int irq_pulse(struct vm *vm, uint32_t gsi) __must_check;

#endif /* VMM_KERNEL_IRQ_H */

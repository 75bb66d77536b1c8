/* SPDX-License-Identifier: MIT */
#include "kernel/x86/boot64.h"

#include <errno.h>
#include <string.h>
#include <linux/kvm.h>

#include "kernel/kvm_ioctl.h"
#include "kernel/mem.h"
#include "kernel/util/log.h"
#include "kernel/vcpu.h"
#include "kernel/vm.h"

#define PTE_P 0x1ULL
#define PTE_RW 0x2ULL
#define PTE_US 0x4ULL
#define PTE_A 0x20ULL
#define PTE_D 0x40ULL
#define PTE_PS 0x80ULL

#define CR0_PE (1ULL << 0)
#define CR0_MP (1ULL << 1)
#define CR0_ET (1ULL << 4)
#define CR0_NE (1ULL << 5)
#define CR0_WP (1ULL << 16)
#define CR0_PG (1ULL << 31)
#define CR4_PAE (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define TSS_OFF 0x800
#define TSS_SIZE 0x80
#define BOOT64_MAX_TSS ((0x1000 - TSS_OFF) / TSS_SIZE)

struct pt_ctx {
	struct vm_mem *mem;
	uint64_t base, size, next; /* pool, bytes used */
	int err;
};

static uint64_t pt_alloc(struct pt_ctx *c)
{
	uint64_t gpa;

	if (c->next + PAGE_SIZE > c->size) {
		c->err = -ENOSPC;
		return 0;
	}
	gpa = c->base + c->next;
	c->next += PAGE_SIZE;
	if (mem_fill(c->mem, gpa, 0, PAGE_SIZE) < 0)
		c->err = -EFAULT;
	return gpa;
}

/* Returns the table an entry points to, allocating it if absent. */
static uint64_t pt_next(struct pt_ctx *c, uint64_t table, unsigned int idx)
{
	uint64_t e;

	if (mem_read(c->mem, table + idx * 8, &e, 8) < 0) {
		c->err = -EFAULT;
		return 0;
	}
	if (e & PTE_P)
		return e & 0x000ffffffffff000ULL;
	e = pt_alloc(c);
	if (c->err)
		return 0;
	/* A and D preset: the CPU never writes to the tables (so page-table
	 * pages do not show up in a dirty log the guest did not cause). */
	e |= PTE_P | PTE_RW | PTE_US | PTE_A;
	if (mem_write(c->mem, table + idx * 8, &e, 8) < 0)
		c->err = -EFAULT;
	return e & ~0xfffULL;
}

static int map_gpa_range(struct pt_ctx *c, uint64_t gpa, uint64_t len)
{
	uint64_t pml4 = c->base;
	uint64_t a = ALIGN_DOWN(gpa, SZ_2M);
	uint64_t end = ALIGN_UP(gpa + len, SZ_2M);

	for (; a < end && !c->err; a += SZ_2M) {
		uint64_t pdpt = pt_next(c, pml4, (a >> 39) & 511);
		uint64_t pd = c->err ? 0 : pt_next(c, pdpt, (a >> 30) & 511);
		uint64_t pde =
			a | PTE_P | PTE_RW | PTE_US | PTE_PS | PTE_A | PTE_D;

		if (c->err)
			break;
		if (mem_write(c->mem, pd + ((a >> 21) & 511) * 8, &pde, 8) < 0)
			c->err = -EFAULT;
	}
	return c->err;
}

static int map_range(struct mem_map *map, void *arg)
{
	return map_gpa_range(arg, mem_map_gpa(map), mem_map_len(map));
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, bool code, int dpl)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel | (uint16_t)dpl;
	s->type = code ? 0xb : 0x3; /* accessed */
	s->present = 1;
	s->dpl = (uint8_t)dpl;
	s->db = code ? 0 : 1;
	s->s = 1;
	s->l = code ? 1 : 0;
	s->g = 1;
}

int boot64_setup(struct vm *vm, const struct boot64 *b)
{
	struct vm_mem *mem = vm_mem(vm);
	uint64_t gdt[BOOT64_SEL_TSS0 / 8 + 2 * BOOT64_MAX_TSS];
	unsigned int n = vm_nr_vcpus(vm), i;
	struct pt_ctx pc = { .mem = mem,
			     .base = b->pt_gpa,
			     .size = b->pt_size };
	int ret;

	if (n > BOOT64_MAX_TSS) {
		pr_err("boot64: at most %d vCPUs", BOOT64_MAX_TSS);
		return -EINVAL;
	}
	/* Page tables: the PML4 first, then whatever the ranges need. */
	pt_alloc(&pc);
	if (!pc.err)
		mem_for_each_map (mem, map_range, &pc)
			;
	if (!pc.err && b->extra_len)
		map_gpa_range(&pc, b->extra_gpa, b->extra_len);
	if (pc.err) {
		pr_err("boot64: building page tables: %s", strerror(-pc.err));
		return pc.err;
	}

	memset(gdt, 0, sizeof(gdt));
	/* Accessed bits preset, for the same reason as A/D in the tables. */
	gdt[BOOT64_SEL_KCODE / 8] = 0x00af9b000000ffffULL;
	gdt[BOOT64_SEL_KDATA / 8] = 0x00cf93000000ffffULL;
	gdt[BOOT64_SEL_UDATA / 8] = 0x00cff3000000ffffULL;
	gdt[BOOT64_SEL_UCODE / 8] = 0x00affb000000ffffULL;
	for (i = 0; i < n; i++) {
		uint64_t tss = b->gdt_gpa + TSS_OFF + i * TSS_SIZE;
		uint64_t lim = 103;
		uint8_t t[104];
		uint64_t rsp0 = b->rsp0_top - i * b->rsp0_stride;

		/* Available 64-bit TSS (type 9), present. */
		gdt[BOOT64_SEL_TSS0 / 8 + 2 * i] =
			(lim & 0xffff) | ((tss & 0xffffff) << 16) |
			(0x89ULL << 40) | (((tss >> 24) & 0xff) << 56);
		gdt[BOOT64_SEL_TSS0 / 8 + 2 * i + 1] = tss >> 32;
		memset(t, 0, sizeof(t));
		memcpy(t + 4, &rsp0, 8);
		/* I/O bitmap base past the limit: IOPL alone decides. */
		t[102] = 104;
		ret = mem_write(mem, tss, t, sizeof(t));
		if (ret < 0)
			return ret;
	}
	ret = mem_write(mem, b->gdt_gpa, gdt,
			(BOOT64_SEL_TSS0 / 8 + 2 * n) * 8);
	if (ret < 0)
		return ret;

	if (b->idt_gpa) {
		ret = mem_fill(mem, b->idt_gpa, 0, 4096);
		for (i = 0; i < b->nr_gates && !ret; i++) {
			const struct boot64_gate *g = &b->gates[i];
			uint64_t h = g->handler, d[2];

			d[0] = (h & 0xffff) |
			       ((uint64_t)BOOT64_SEL_KCODE << 16) |
			       ((0x8eULL | ((uint64_t)(g->dpl & 3) << 5))
				<< 40) |
			       (((h >> 16) & 0xffff) << 48);
			d[1] = h >> 32;
			ret = mem_write(mem, b->idt_gpa + g->vector * 16ULL, d,
					16);
		}
		if (ret < 0)
			return ret;
	}

	for (i = 0; i < (b->bsp_only ? 1 : n); i++) {
		struct vcpu *vcpu = vm_vcpu(vm, i);
		struct kvm_sregs sregs;
		struct kvm_regs regs;

		ret = vcpu_get_sregs(vcpu, &sregs);
		if (ret < 0)
			return ret;
		seg_flat(&sregs.cs, BOOT64_SEL_KCODE, true, 0);
		seg_flat(&sregs.ds, BOOT64_SEL_KDATA, false, 0);
		sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
		memset(&sregs.tr, 0, sizeof(sregs.tr));
		sregs.tr.base = b->gdt_gpa + TSS_OFF + i * TSS_SIZE;
		sregs.tr.limit = 103;
		sregs.tr.selector = (uint16_t)(BOOT64_SEL_TSS0 + 16 * i);
		sregs.tr.type = 0xb; /* busy 64-bit TSS */
		sregs.tr.present = 1;
		sregs.gdt.base = b->gdt_gpa;
		sregs.gdt.limit =
			(uint16_t)((BOOT64_SEL_TSS0 / 8 + 2 * n) * 8 - 1);
		sregs.idt.base = b->idt_gpa;
		sregs.idt.limit = b->idt_gpa ? 4095 : 0;
		sregs.cr3 = b->pt_gpa;
		sregs.cr4 = CR4_PAE;
		sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
		sregs.efer = EFER_LME | EFER_LMA;
		ret = vcpu_set_sregs(vcpu, &sregs);
		if (ret < 0) {
			pr_err("boot64: vCPU %u KVM_SET_SREGS: %s", i,
			       strerror(-ret));
			return ret;
		}
		memset(&regs, 0, sizeof(regs));
		regs.rip = b->entry;
		regs.rsp = b->stack_top - i * b->stack_stride;
		regs.rflags = 0x2;
		regs.rdi = i;
		if (b->boot_info_gpa) {
			regs.rsi = b->boot_info_gpa;
		} else {
			regs.rsi = n;
			regs.rdx = b->user_stack_top - i * b->stack_stride;
			regs.rcx = b->arg_base + i * b->arg_stride;
		}
		ret = vcpu_set_regs(vcpu, &regs);
		if (ret < 0)
			return ret;
		/* With the in-kernel LAPIC, APs wait for INIT/SIPI: not here. */
		if (vm_has_irqchip(vm)) {
			struct kvm_mp_state mp = {
				.mp_state = KVM_MP_STATE_RUNNABLE
			};

			ret = kvm_ioctl(vcpu_fd(vcpu), KVM_SET_MP_STATE, &mp);
			if (ret < 0) {
				pr_err("boot64: vCPU %u KVM_SET_MP_STATE: %s",
				       i, strerror(-ret));
				return ret;
			}
		}
	}
	return 0;
}

static void seg_flat32(struct kvm_segment *s, uint16_t sel, bool code)
{
	memset(s, 0, sizeof(*s));
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = code ? 0xb : 0x3;
	s->present = 1;
	s->db = 1;
	s->s = 1;
	s->g = 1;
}

int boot32_setup(struct vm *vm, uint64_t gdt_gpa, uint32_t entry, uint32_t eax,
		 uint32_t ebx)
{
	/* null, 32-bit code 0x08, data 0x10, a 32-bit TSS at 0x18. */
	uint64_t gdt[4] = { 0, 0x00cf9b000000ffffULL, 0x00cf93000000ffffULL,
			    0x00008b000000ffffULL | ((gdt_gpa + 0x800) << 16) };
	struct vcpu *vcpu = vm_vcpu(vm, 0);
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int ret;

	ret = mem_write(vm_mem(vm), gdt_gpa, gdt, sizeof(gdt));
	if (!ret)
		ret = mem_fill(vm_mem(vm), gdt_gpa + 0x800, 0, 104);
	if (ret < 0)
		return ret;
	ret = vcpu_get_sregs(vcpu, &sregs);
	if (ret < 0)
		return ret;
	seg_flat32(&sregs.cs, 0x08, true);
	seg_flat32(&sregs.ds, 0x10, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.base = gdt_gpa + 0x800;
	sregs.tr.limit = 103;
	sregs.tr.selector = 0x18;
	sregs.tr.type = 0xb;
	sregs.tr.present = 1;
	sregs.gdt.base = gdt_gpa;
	sregs.gdt.limit = sizeof(gdt) - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = CR0_PE | CR0_ET;
	sregs.cr3 = 0;
	sregs.cr4 = 0;
	sregs.efer = 0;
	ret = vcpu_set_sregs(vcpu, &sregs);
	if (ret < 0) {
		pr_err("boot32: KVM_SET_SREGS: %s", strerror(-ret));
		return ret;
	}
	memset(&regs, 0, sizeof(regs));
	regs.rip = entry;
	regs.rflags = 0x2;
	regs.rax = eax;
	regs.rbx = ebx;
	return vcpu_set_regs(vcpu, &regs);
}

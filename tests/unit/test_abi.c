// SPDX-License-Identifier: Apache-2.0
/*
 * Shared struct layout, host side: abi_assert.h fails the build on a mismatch;
 * these checks repeat it at run time so it shows in the test count, and check
 * that every field of every struct is listed (no field added unlisted).
 */
#include <linux/types.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "sockmesh/abi_assert.h"

struct abi_struct {
	const char *name;
	size_t size, expected;
};

struct abi_field {
	const char *type, *field;
	size_t offset, size, expected;
};

#define STRUCT_ROW(type, size) {#type, sizeof(struct type), (size)},
#define FIELD_ROW(type, field, off)                                                                \
	{#type, #field, offsetof(struct type, field), sizeof(((struct type *) 0)->field), (off)},

static const struct abi_struct structs[] = {SM_ABI_STRUCTS(STRUCT_ROW)};
static const struct abi_field fields[] = {SM_ABI_FIELDS(FIELD_ROW)};

static void test_struct_sizes(void **state)
{
	char what[128];

	for (size_t i = 0; i < sizeof(structs) / sizeof(structs[0]); i++) {
		snprintf(what, sizeof(what), "sizeof(struct %s)", structs[i].name);
		ASSERT_EQ(structs[i].size, structs[i].expected, what);
	}
}

static void test_field_offsets(void **state)
{
	char what[128];

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		snprintf(what, sizeof(what), "offsetof(struct %s, %s)", fields[i].type,
			 fields[i].field);
		ASSERT_EQ(fields[i].offset, fields[i].expected, what);
	}
}

/*
 * The listed fields of a struct, in order, must tile it exactly: each starts
 * where the previous ended and the last ends at sizeof. A gap means a field
 * is missing from the list or the compiler inserted padding.
 */
static void test_fields_cover_structs(void **state)
{
	char what[160];

	for (size_t s = 0; s < sizeof(structs) / sizeof(structs[0]); s++) {
		size_t end = 0;

		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			if (strcmp(fields[i].type, structs[s].name) != 0)
				continue;
			snprintf(what, sizeof(what),
				 "struct %s: %s starts where the previous "
				 "field ends",
				 structs[s].name, fields[i].field);
			ASSERT_EQ(fields[i].offset, end, what);
			end = fields[i].offset + fields[i].size;
		}
		snprintf(what, sizeof(what), "struct %s: listed fields end at sizeof",
			 structs[s].name);
		ASSERT_EQ(end, structs[s].size, what);
	}
}

#define CONST_ROW(name, value) {#name, (long long) (name), (value)},

static void test_abi_constants(void **state)
{
	static const struct {
		const char *name;
		long long value, expected;
	} consts[] = {SM_ABI_CONSTANTS(CONST_ROW)};

	for (size_t i = 0; i < sizeof(consts) / sizeof(consts[0]); i++)
		ASSERT_EQ(consts[i].value, consts[i].expected, consts[i].name);
}

static void test_counter_names(void **state)
{
	static const char *const names[] = SM_COUNTER_NAMES;

	ASSERT_EQ(sizeof(names) / sizeof(names[0]), SM_CNT_MAX, "one name per counter");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		ASSERT_EQ(names[i] != NULL && names[i][0] != '\0', 1, "counter name non-empty");
		for (size_t j = 0; j < i; j++)
			ASSERT_EQ(strcmp(names[i], names[j]) != 0, 1, "counter names unique");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_struct_sizes),	     cmocka_unit_test(test_field_offsets),
		cmocka_unit_test(test_fields_cover_structs), cmocka_unit_test(test_abi_constants),
		cmocka_unit_test(test_counter_names),
	};

	return cmocka_run_group_tests_name("abi", tests, NULL, NULL);
}

// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of userspace/lib/drop_reason.c, and the check that keeps the
 * docs true: the Drop reasons table of docs/flow-schema.md and $defs.reason
 * of docs/flow-schema.json name exactly the code's reasons (the markdown
 * with the same meanings). A reason added to the code but not the docs, or
 * the other way round, fails here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "check.h"
#include "drop_reason.h"
#include "spiffe.h"

#ifndef SM_SOURCE_DIR
#define SM_SOURCE_DIR "."
#endif

#define MD_PATH	  SM_SOURCE_DIR "/docs/flow-schema.md"
#define JSON_PATH SM_SOURCE_DIR "/docs/flow-schema.json"

static int table_index(const char *name)
{
	const struct sm_drop_reason_def *t = sm_drop_reasons();

	for (int i = 0; i < SM_DROP_REASON_MAX; i++)
		if (strcmp(t[i].name, name) == 0)
			return i;
	return -1;
}

static void test_table_complete(void **state)
{
	const struct sm_drop_reason_def *t = sm_drop_reasons();

	(void) state;
	for (int i = 0; i < SM_DROP_REASON_MAX; i++) {
		ASSERT_NOT_NULL(t[i].name, "every enum value has a name");
		ASSERT_NOT_NULL(t[i].meaning, t[i].name);
		ASSERT_GE(strlen(t[i].meaning), 8, t[i].name);
		ASSERT_EQ(table_index(t[i].name), i, "each name once");
		ASSERT_STR_EQ(sm_drop_reason_name((enum sm_drop_reason) i), t[i].name, "name");
	}
	ASSERT_STR_EQ(sm_drop_reason_name(SM_DROP_REASON_MAX), "unknown", "out of range");
}

/* Every SVID refusal name (spiffe.h) is a drop reason: they become records' drop_reason. */
static void test_svid_reasons_included(void **state)
{
	(void) state;
	for (int i = 1; i < SM_SVID_REASON_MAX; i++) {
		const char *n = sm_svid_reason_name((enum sm_svid_reason) i);

		if (table_index(n) < 0)
			fail_msg("SVID reason '%s' is missing from the drop reason table", n);
	}
}

static void test_known(void **state)
{
	char buf[16];

	(void) state;
	ASSERT_EQ(sm_drop_reason_known("fd_exhausted"), true, "a table name");
	ASSERT_EQ(sm_drop_reason_known(sm_drop_reason_http(502, buf, sizeof(buf))), true,
		  "http_502");
	ASSERT_STR_EQ(buf, "http_502", "http status");
	ASSERT_EQ(sm_drop_reason_known("http_<status>"), false, "the placeholder itself");
	ASSERT_EQ(sm_drop_reason_known("http_99"), false, "two digits");
	ASSERT_EQ(sm_drop_reason_known("http_600"), false, "above 599");
	ASSERT_EQ(sm_drop_reason_known("no_such_reason"), false, "unknown");
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	long n;

	if (!f)
		fail_msg("cannot open %s", path);
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = calloc(1, (size_t) n + 1);
		if (buf && fread(buf, 1, (size_t) n, f) != (size_t) n) {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	if (!buf)
		fail_msg("cannot read %s", path);
	return buf;
}

/* The rows "| `name` | meaning |" of the "## Drop reasons" section. */
static void test_markdown_matches(void **state)
{
	char *md = slurp(MD_PATH), *p, *end, *line;
	bool seen[SM_DROP_REASON_MAX] = {false};
	int rows = 0;

	(void) state;
	p = strstr(md, "\n## Drop reasons\n");
	ASSERT_NOT_NULL(p, "a '## Drop reasons' section in docs/flow-schema.md");
	p += 2;
	end = strstr(p, "\n## ");
	if (end)
		*end = '\0';
	for (line = strtok(p, "\n"); line; line = strtok(NULL, "\n")) {
		char name[80], meaning[400];
		size_t len;
		int i;

		if (strncmp(line, "| `", 3) != 0)
			continue;
		if (sscanf(line, "| `%79[^`]` | %399[^\n]", name, meaning) != 2)
			fail_msg("docs/flow-schema.md: cannot read the row '%s'", line);
		len = strlen(meaning);
		if (len < 2 || strcmp(meaning + len - 2, " |") != 0)
			fail_msg("docs/flow-schema.md: row '%s' does not end with ' |'", line);
		meaning[len - 2] = '\0';
		i = table_index(name);
		if (i < 0)
			fail_msg(
				"docs/flow-schema.md names '%s', which userspace/lib/drop_reason.c "
				"does not have",
				name);
		if (seen[i])
			fail_msg("docs/flow-schema.md lists '%s' twice", name);
		seen[i] = true;
		if (strcmp(meaning, sm_drop_reasons()[i].meaning) != 0)
			fail_msg("docs/flow-schema.md says '%s' means \"%s\"; the code says \"%s\"",
				 name, meaning, sm_drop_reasons()[i].meaning);
		rows++;
	}
	for (int i = 0; i < SM_DROP_REASON_MAX; i++)
		if (!seen[i])
			fail_msg("'%s' is missing from docs/flow-schema.md's Drop reasons",
				 sm_drop_reasons()[i].name);
	ASSERT_EQ(rows, SM_DROP_REASON_MAX, "rows");
	free(md);
}

/* $defs.reason: anyOf [{enum: [...]}, {pattern: "^http_..."}]. */
static void test_json_schema_matches(void **state)
{
	json_object *root = json_object_from_file(JSON_PATH), *defs, *reason, *any, *en = NULL;
	bool seen[SM_DROP_REASON_MAX] = {false};

	(void) state;
	ASSERT_NOT_NULL(root, JSON_PATH);
	if (!json_object_object_get_ex(root, "$defs", &defs) ||
	    !json_object_object_get_ex(defs, "reason", &reason) ||
	    !json_object_object_get_ex(reason, "anyOf", &any))
		fail_msg("docs/flow-schema.json has no $defs.reason.anyOf");
	for (size_t k = 0; k < json_object_array_length(any) && !en; k++)
		json_object_object_get_ex(json_object_array_get_idx(any, k), "enum", &en);
	ASSERT_NOT_NULL(en, "$defs.reason.anyOf has an enum");
	for (size_t k = 0; k < json_object_array_length(en); k++) {
		const char *name = json_object_get_string(json_object_array_get_idx(en, k));
		int i = table_index(name);

		if (i < 0 || i == SM_DROP_HTTP_STATUS)
			fail_msg("docs/flow-schema.json names '%s', which "
				 "userspace/lib/drop_reason.c "
				 "does not have",
				 name);
		if (seen[i])
			fail_msg("docs/flow-schema.json lists '%s' twice", name);
		seen[i] = true;
	}
	for (int i = 0; i < SM_DROP_REASON_MAX; i++)
		if (!seen[i] && i != SM_DROP_HTTP_STATUS)
			fail_msg("'%s' is missing from docs/flow-schema.json's $defs.reason",
				 sm_drop_reasons()[i].name);
	json_object_put(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_complete),
		cmocka_unit_test(test_svid_reasons_included),
		cmocka_unit_test(test_known),
		cmocka_unit_test(test_markdown_matches),
		cmocka_unit_test(test_json_schema_matches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Internals of src/core/node.c shown to its unit tests. */
#ifndef EVSCALE_NODE_INT_H
#define EVSCALE_NODE_INT_H

#include <stdint.h>

/* Key and anchor name comparisons made by this thread's parses and lookups. test_node.c reads it
 * to check that building and looking up stay linear (issue 9) without timing anything: a scan
 * per key is n^2/2 comparisons, a hash about one per key. */
extern _Thread_local uint64_t evs_node__compares;

/* Maps with at least this many pairs are hashed; smaller ones are scanned. */
#define EVS_NODE__INDEX_MIN 8u

#endif

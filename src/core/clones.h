/* Private to src: function multiversioning for the few kernels that are not GEMMs but still take a
 * visible share of a step (conv transforms, the DV loss). The library is built for baseline x86-64 so
 * that installed builds run anywhere; WCMI_CLONES(...) builds a function once per listed target and
 * picks one at load time (GCC/clang target_clones). Functions so marked take pointers only, so the
 * clones share the baseline ABI, and are not inlined into their callers: put them in the loop body,
 * not around an OpenMP region (its outlined body would be built for the baseline only).
 *
 * Without FMA in the target list, a clone's results are the same bits as the baseline's: vectors
 * change the width, not the operations (the build keeps a multiply and an add separately rounded
 * unless a file opts in with -ffp-contract=fast, as conv2d_thin.c does).
 *
 * Sanitizer builds skip the clones: their ifunc resolvers run before the sanitizer runtime starts. */
#ifndef WCMI_CORE_CLONES_H
#define WCMI_CORE_CLONES_H

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define WCMI_NO_CLONES 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define WCMI_NO_CLONES 1
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(WCMI_NO_CLONES)
#define WCMI_CLONES(...) __attribute__((target_clones(__VA_ARGS__)))
#else
#define WCMI_CLONES(...)
#endif

#endif

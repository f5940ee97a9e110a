/* wcmi file formats, one header each; this umbrella keeps `#include "wcmi/io.h"` working:
 *   wcmi/atomic.h       atomic writes, mkdir -p, bounded whole-file reads
 *   wcmi/json.h         JSON writer and DOM reader (jansson underneath)
 *   wcmi/safetensors.h  safetensors writer and hostile-input reader, element types
 *   wcmi/npy.h          NumPy .npy writer and reader
 * PNG output lives in wcmi/image.h. Every reader treats its input as hostile and every error is one
 * line naming the file and the problem; every writer goes through wcmi_atomic_*. Layouts are
 * described in docs/formats.md.
 */
#ifndef WCMI_IO_H
#define WCMI_IO_H

#include "wcmi/atomic.h"
#include "wcmi/json.h"
#include "wcmi/npy.h"
#include "wcmi/safetensors.h"

#endif

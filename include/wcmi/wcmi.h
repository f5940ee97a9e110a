/* wcmi: worst-case mutual information for adversarially robust representations.
 * One include for the whole public API; see README.md and examples/quickstart.c. */
#ifndef WCMI_WCMI_H
#define WCMI_WCMI_H

#include "wcmi/attack.h"
#include "wcmi/blas.h"
#include "wcmi/core.h"
#include "wcmi/data.h"
#include "wcmi/dist.h"
#include "wcmi/image.h"
#include "wcmi/io.h"
#include "wcmi/mi.h"
#include "wcmi/model.h"
#include "wcmi/nn.h"
#include "wcmi/saliency.h"
#include "wcmi/reproduce.h"
#include "wcmi/run_record.h"
#include "wcmi/tasks.h"
#include "wcmi/train.h"

#endif

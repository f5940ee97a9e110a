/* Internal: the one training step of the MI objective, shared by train-encoder (encoder + critic)
 * and estimate-mi (the critic alone, encoder frozen). */
#ifndef WCMI_ESTIMATOR_MI_STEP_H
#define WCMI_ESTIMATOR_MI_STEP_H

#include "train/trainer.h"
#include "wcmi/train.h"

/* On x (n samples), or, when the run is the worst case, on the batch the trainer's MI attack finds
 * against d: one step of d's MI loss over `params` (WCMI_DIM_*_PARAMS), the encoder in train mode
 * when encoder_train; the loss is checked and the trainer's optimizer steps. vals[0] = the loss,
 * vals[1] = the MI estimate it gives. */
int mi_train_step(trainer *t, wcmi_dim *d, const float *x, int n, int encoder_train, unsigned params, double *vals);

#endif

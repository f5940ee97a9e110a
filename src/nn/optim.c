/* Adam and SGD with PyTorch semantics (torch.optim.Adam / SGD, default flags), and StepLR.
 * State lives in named flat buffers so checkpoints can save and restore it by name. */
#include "wcmi/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { OPT_ADAM, OPT_SGD } optim_kind;

typedef struct opt_slot {
  float *data, *grad; /* the parameter */
  int64_t n;
  float *m, *v; /* Adam: exp_avg, exp_avg_sq; SGD: m = momentum_buffer */
} opt_slot;

struct wcmi_optim {
  optim_kind kind;
  wcmi_adam_cfg adam;
  wcmi_sgd_cfg sgd;
  float lr;
  int64_t step;
  opt_slot *slots;
  int n_slots;
  float *state_buf;
  wcmi_param *state; /* named views of state_buf, then the step counter */
  int n_state;
};

wcmi_adam_cfg wcmi_adam_defaults(void) { return (wcmi_adam_cfg){1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f}; }

/* Names longer than WCMI_NAME_MAX are cut; parameter names are far shorter (net.c checks them). */
static void add_state(wcmi_optim *o, const char *pname, const char *leaf, wcmi_shape shape, float *data) {
  wcmi_param *p = &o->state[o->n_state++];
  memset(p, 0, sizeof *p);
  if (snprintf(p->name, sizeof p->name, "optim.%s.%s", pname, leaf) >= (int)sizeof p->name)
    p->name[sizeof p->name - 1] = '\0';
  p->kind = WCMI_PARAM_BUFFER;
  p->shape = shape;
  p->data = data;
}

static wcmi_optim *optim_new(wcmi_ctx *ctx, wcmi_net **nets, int n_nets, optim_kind kind) {
  int n = 0;
  int64_t total = 0;
  for (int k = 0; k < n_nets; k++)
    for (int i = 0; i < wcmi_net_num_params(nets[k]); i++) {
      wcmi_param *p = wcmi_net_param(nets[k], i);
      if (p->kind != WCMI_PARAM_TRAINABLE) continue;
      if (!p->data) {
        wcmi_fail(ctx, WCMI_EINVAL, "optimizer: parameter %s is not allocated (finalize the net first)", p->name);
        return NULL;
      }
      n++;
      total += wcmi_shape_numel(&p->shape);
    }
  int per = kind == OPT_ADAM ? 2 : 1;
  wcmi_optim *o = wcmi_calloc(ctx, 1, sizeof *o);
  if (!o) {
    wcmi_fail(ctx, WCMI_ENOMEM, "optimizer: out of memory");
    return NULL;
  }
  o->kind = kind;
  o->slots = wcmi_calloc(ctx, (size_t)(n ? n : 1), sizeof *o->slots);
  o->state = wcmi_calloc(ctx, (size_t)(per * n + 1), sizeof *o->state);
  o->state_buf = wcmi_calloc(ctx, (size_t)(per * total + 1), sizeof(float));
  if (!o->slots || !o->state || !o->state_buf) {
    wcmi_optim_free(o);
    wcmi_fail(ctx, WCMI_ENOMEM, "optimizer: out of memory for %lld state values", (long long)(per * total));
    return NULL;
  }
  float *buf = o->state_buf;
  for (int k = 0; k < n_nets; k++)
    for (int i = 0; i < wcmi_net_num_params(nets[k]); i++) {
      wcmi_param *p = wcmi_net_param(nets[k], i);
      if (p->kind != WCMI_PARAM_TRAINABLE) continue;
      opt_slot *s = &o->slots[o->n_slots++];
      s->data = p->data;
      s->grad = p->grad;
      s->n = wcmi_shape_numel(&p->shape);
      s->m = buf;
      buf += s->n;
      add_state(o, p->name, kind == OPT_ADAM ? "exp_avg" : "momentum_buffer", p->shape, s->m);
      if (kind == OPT_ADAM) {
        s->v = buf;
        buf += s->n;
        add_state(o, p->name, "exp_avg_sq", p->shape, s->v);
      }
    }
  wcmi_param *st = &o->state[o->n_state++];
  memset(st, 0, sizeof *st);
  snprintf(st->name, sizeof st->name, "optim.step");
  st->kind = WCMI_PARAM_COUNTER;
  st->i64 = &o->step;
  return o;
}

wcmi_optim *wcmi_adam_new(wcmi_ctx *ctx, wcmi_net **nets, int n_nets, wcmi_adam_cfg cfg) {
  if (!(cfg.lr >= 0) || !(cfg.beta1 >= 0 && cfg.beta1 < 1) || !(cfg.beta2 >= 0 && cfg.beta2 < 1) || !(cfg.eps >= 0) ||
      !(cfg.weight_decay >= 0)) {
    wcmi_fail(ctx, WCMI_EINVAL, "adam: invalid hyper-parameters (lr %g, betas %g/%g, eps %g, weight decay %g)",
              (double)cfg.lr, (double)cfg.beta1, (double)cfg.beta2, (double)cfg.eps, (double)cfg.weight_decay);
    return NULL;
  }
  wcmi_optim *o = optim_new(ctx, nets, n_nets, OPT_ADAM);
  if (o) {
    o->adam = cfg;
    o->lr = cfg.lr;
  }
  return o;
}

wcmi_optim *wcmi_sgd_new(wcmi_ctx *ctx, wcmi_net **nets, int n_nets, wcmi_sgd_cfg cfg) {
  if (!(cfg.lr >= 0) || !(cfg.momentum >= 0) || !(cfg.weight_decay >= 0)) {
    wcmi_fail(ctx, WCMI_EINVAL, "sgd: invalid hyper-parameters (lr %g, momentum %g, weight decay %g)", (double)cfg.lr,
              (double)cfg.momentum, (double)cfg.weight_decay);
    return NULL;
  }
  wcmi_optim *o = optim_new(ctx, nets, n_nets, OPT_SGD);
  if (o) {
    o->sgd = cfg;
    o->lr = cfg.lr;
  }
  return o;
}

void wcmi_optim_free(wcmi_optim *o) {
  if (!o) return;
  wcmi_free(o->slots);
  wcmi_free(o->state);
  wcmi_free(o->state_buf);
  wcmi_free(o);
}

/* torch.optim.Adam (amsgrad=False, maximize=False): decoupled bias corrections, eps added to
 * sqrt(v_hat) as sqrt(v)/sqrt(bc2) + eps. */
static void adam_step(wcmi_optim *o) {
  const float b1 = o->adam.beta1, b2 = o->adam.beta2, eps = o->adam.eps, wd = o->adam.weight_decay;
  const double bc1 = 1.0 - pow(b1, (double)o->step), bc2 = 1.0 - pow(b2, (double)o->step);
  const float step_size = (float)(o->lr / bc1), sqrt_bc2 = (float)sqrt(bc2);
  for (int k = 0; k < o->n_slots; k++) {
    opt_slot *s = &o->slots[k];
    float *p = s->data, *m = s->m, *v = s->v;
    const float *g = s->grad;
#pragma omp parallel for schedule(static) if (s->n > 65536)
    for (int64_t i = 0; i < s->n; i++) {
      float gi = g[i] + wd * p[i];
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      p[i] -= step_size * m[i] / (sqrtf(v[i]) / sqrt_bc2 + eps);
    }
  }
}

/* torch.optim.SGD (dampening 0, nesterov False): the first step seeds the buffer with the gradient. */
static void sgd_step(wcmi_optim *o) {
  const float mom = o->sgd.momentum, wd = o->sgd.weight_decay, lr = o->lr;
  const int first = o->step == 1;
  for (int k = 0; k < o->n_slots; k++) {
    opt_slot *s = &o->slots[k];
    float *p = s->data, *buf = s->m;
    const float *g = s->grad;
#pragma omp parallel for schedule(static) if (s->n > 65536)
    for (int64_t i = 0; i < s->n; i++) {
      float gi = g[i] + wd * p[i];
      if (mom != 0.0f) {
        buf[i] = first ? gi : mom * buf[i] + gi;
        gi = buf[i];
      }
      p[i] -= lr * gi;
    }
  }
}

void wcmi_optim_step(wcmi_optim *o) {
  o->step++;
  if (o->kind == OPT_ADAM) adam_step(o);
  else sgd_step(o);
}

void wcmi_optim_zero_grad(wcmi_optim *o) {
  for (int k = 0; k < o->n_slots; k++) memset(o->slots[k].grad, 0, (size_t)o->slots[k].n * sizeof(float));
}

float wcmi_optim_lr(const wcmi_optim *o) { return o->lr; }
void wcmi_optim_set_lr(wcmi_optim *o, float lr) { o->lr = lr; }
int64_t wcmi_optim_steps(const wcmi_optim *o) { return o->step; }
int wcmi_optim_num_state(const wcmi_optim *o) { return o->n_state; }
wcmi_param *wcmi_optim_state(wcmi_optim *o, int i) { return i >= 0 && i < o->n_state ? &o->state[i] : NULL; }

float wcmi_steplr_lr(const wcmi_steplr *s, int epoch) {
  if (s->step_size <= 0) return s->base_lr;
  return (float)(s->base_lr * pow(s->gamma, (double)(epoch / s->step_size)));
}

float wcmi_lr_at(wcmi_lr_schedule s, float base, int64_t step, int64_t warmup, int64_t total) {
  if (s != WCMI_LR_COSINE || total <= 0) return base;
  if (step >= total) step = total - 1;
  if (step < 0) step = 0;
  if (warmup > total) warmup = total;
  if (step < warmup) return (float)((double)base * (double)(step + 1) / (double)warmup);
  const double decay = total > warmup ? (double)(step - warmup) / (double)(total - warmup) : 0.0;
  return (float)((double)base * 0.5 * (1.0 + cos(3.14159265358979323846 * decay)));
}

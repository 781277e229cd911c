// The executor, whole: a model's ExecConfig (exec/config.h), its weights (exec/weights.h, read
// from disk by exec/disk_reader.h when offloaded), the Executor interface and the run loop
// (exec/executor.h), and the CPU executor (exec/cpu_model.h). Include the piece you need; this
// header is for code that uses them all.
//
// Data flow:
//   ModelSpec --ExecConfig--> shapes;  Checkpoint (mmap'd safetensors) | seeded random -> ModelWeights
//   ModelWeights + ExecConfig --> CpuModel::forward(ids, start) --> logits of the last position
//   generate(): prefill, then one forward per new token, argmax each time.
//
// Example:
//   ExecConfig cfg = exec_config(load_model_spec("ckpt/config.json"));
//   ModelWeights w = ModelWeights::from_checkpoint(cfg, Checkpoint::open("ckpt"));
//   CpuModel m(cfg, w, {.batch = 1, .max_seq = 256, .threads = 2});
//   GenerateResult r = generate(m, prompt_ids, 32);
#pragma once

#include "exec/config.h"
#include "exec/cpu_model.h"
#include "exec/disk_reader.h"
#include "exec/executor.h"
#include "exec/placement.h"
#include "exec/weights.h"

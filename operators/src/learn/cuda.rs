//! Training on a CUDA device through `cudarc`, loaded dynamically: the
//! binary starts and trains on the CPU where no driver is installed.
//!
//! ```text
//!  host mini-batch ─► CSR (indices, values, row offsets, targets, touched params) ─► device
//!     forward:  linear_forward | mlp_hidden + mlp_output      (raw outputs z)
//!     loss:     output_grad                                   (dL/dz per row, loss per row)
//!     backward: linear_backward | mlp_backward                (atomic adds into the gradient)
//!     update:   sgd_update | adam_update over touched params  (then the gradient is zeroed)
//!  raw outputs before the step ─► host (for progressive metrics); parameters ─► host on publish
//! ```
//!
//! The kernels are compiled at start with NVRTC and follow the CPU code's
//! math ([`LinearModel`](super::LinearModel), [`Mlp`](super::Mlp)): the
//! same parameter layout, the same lazy L2 on touched parameters, the same
//! Adam bias correction; only the order of floating-point sums differs.
//!
//! This is the one module allowed `unsafe`: `cudarc` marks kernel launches
//! and its library probes unsafe, because the compiler cannot check a
//! kernel's signature against its arguments. Each block states why it
//! holds.
#![allow(unsafe_code)]

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};

use super::learner::{LearnError, Trainer};
use super::loss::Loss;
use super::model::{ModelKind, ModelSpec, OnlineModel};
use super::optim::{OptimizerKind, ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON};
use super::SparseFeatures;

/// The kernels, compiled by NVRTC when a trainer opens.
const KERNELS: &str = r#"
extern "C" __global__ void linear_forward(const float* w, const int* idx, const float* val,
        const int* row_ptr, int rows, int dim, float* out) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float z = 0.0f;
    for (int k = row_ptr[r]; k < row_ptr[r + 1]; k++) {
        int i = idx[k];
        if (i >= 0 && i < dim) z += w[i] * val[k];
    }
    out[r] = z;
}

extern "C" __global__ void mlp_hidden(const float* p, const int* idx, const float* val,
        const int* row_ptr, int rows, int dim, int hidden, float* h) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= rows * hidden) return;
    int r = t / hidden, j = t % hidden;
    float a = p[dim * hidden + j];
    for (int k = row_ptr[r]; k < row_ptr[r + 1]; k++) {
        int i = idx[k];
        if (i >= 0 && i < dim) a += p[i * hidden + j] * val[k];
    }
    h[t] = tanhf(a);
}

extern "C" __global__ void mlp_output(const float* p, const float* h, int rows, int dim,
        int hidden, float* out) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    int w2 = dim * hidden + hidden;
    float z = p[w2 + hidden];
    for (int j = 0; j < hidden; j++) z += h[r * hidden + j] * p[w2 + j];
    out[r] = z;
}

// loss: 0 squared, 1 huber(delta), 2 logistic. d = dL/dz * scale.
extern "C" __global__ void output_grad(const float* z, const float* y, int rows, int loss,
        float delta, float scale, float* d) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float e = z[r] - y[r];
    float g;
    if (loss == 0) {
        g = e;
    } else if (loss == 1) {
        g = fminf(fmaxf(e, -delta), delta);
    } else {
        float s = z[r] >= 0.0f ? 1.0f / (1.0f + expf(-z[r])) : expf(z[r]) / (1.0f + expf(z[r]));
        g = s - y[r];
    }
    d[r] = g * scale;
}

extern "C" __global__ void linear_backward(const float* d, const int* idx, const float* val,
        const int* row_ptr, int rows, int dim, float* grad) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    for (int k = row_ptr[r]; k < row_ptr[r + 1]; k++) {
        int i = idx[k];
        if (i >= 0 && i < dim) atomicAdd(&grad[i], d[r] * val[k]);
    }
}

extern "C" __global__ void mlp_backward(const float* p, const float* h, const float* d,
        const int* idx, const float* val, const int* row_ptr, int rows, int dim, int hidden,
        float* grad) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= rows * hidden) return;
    int r = t / hidden, j = t % hidden;
    int b1 = dim * hidden, w2 = b1 + hidden, b2 = w2 + hidden;
    float dr = d[r], hj = h[t];
    atomicAdd(&grad[w2 + j], dr * hj);
    if (j == 0) atomicAdd(&grad[b2], dr);
    float dh = dr * p[w2 + j] * (1.0f - hj * hj);
    atomicAdd(&grad[b1 + j], dh);
    for (int k = row_ptr[r]; k < row_ptr[r + 1]; k++) {
        int i = idx[k];
        if (i >= 0 && i < dim) atomicAdd(&grad[i * hidden + j], dh * val[k]);
    }
}

extern "C" __global__ void sgd_update(float* p, float* grad, const int* touched, int n,
        float l2, float lr) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    int i = touched[t];
    float g = grad[i] + l2 * p[i];
    p[i] -= lr * g;
    grad[i] = 0.0f;
}

extern "C" __global__ void adam_update(float* p, float* grad, float* m, float* v,
        const int* touched, int n, float l2, float step, float beta1, float beta2, float eps) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    int i = touched[t];
    float g = grad[i] + l2 * p[i];
    m[i] = beta1 * m[i] + (1.0f - beta1) * g;
    v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
    p[i] -= step * m[i] / (sqrtf(v[i]) + eps);
    grad[i] = 0.0f;
}
"#;

struct Kernels {
    linear_forward: CudaFunction,
    mlp_hidden: CudaFunction,
    mlp_output: CudaFunction,
    output_grad: CudaFunction,
    linear_backward: CudaFunction,
    mlp_backward: CudaFunction,
    sgd_update: CudaFunction,
    adam_update: CudaFunction,
}

/// Whether a CUDA driver, NVRTC and at least one device are present.
pub fn available() -> bool {
    libraries_present() && matches!(CudaContext::device_count(), Ok(n) if n > 0)
}

fn libraries_present() -> bool {
    // SAFETY: these probes only try to open the shared libraries with
    // `libloading` and drop them; no symbol is called. `cudarc` marks them
    // unsafe because loading a library runs its initializers, which for the
    // vendor's CUDA libraries is the documented way to use them.
    unsafe { cudarc::driver::sys::is_culib_present() && cudarc::nvrtc::sys::is_culib_present() }
}

/// A model trained on a CUDA device, with a host copy for publishing.
pub struct CudaTrainer {
    ordinal: usize,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    host: OnlineModel,
    dim: u32,
    hidden: u32,
    loss: Loss,
    optimizer: OptimizerKind,
    l2: f32,
    params: CudaSlice<f32>,
    gradient: CudaSlice<f32>,
    m: CudaSlice<f32>,
    v: CudaSlice<f32>,
    steps: u64,
    /// Whether the device has steps the host copy lacks.
    dirty: bool,
    /// Scratch: which W1 rows / weights a batch touches.
    marked: Vec<bool>,
}

fn device_error(ordinal: usize, what: &str, e: impl std::fmt::Display) -> LearnError {
    LearnError::Device {
        device: format!("cuda:{ordinal}"),
        detail: format!("{what}: {e}"),
    }
}

fn launch_1d(n: usize) -> LaunchConfig {
    let threads = 256u32;
    let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    LaunchConfig {
        grid_dim: (n.div_ceil(threads), 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaTrainer {
    /// Opens device `ordinal`, compiles the kernels and uploads a fresh
    /// model built from `spec` (the same initial weights as on the CPU).
    pub fn open(ordinal: usize, spec: &ModelSpec) -> Result<Self, LearnError> {
        if !libraries_present() {
            return Err(device_error(
                ordinal,
                "opening CUDA",
                "the CUDA driver library or NVRTC was not found",
            ));
        }
        // A driver too old for a symbol cudarc needs panics inside cudarc:
        // treat that as "no usable device" rather than a crash.
        std::panic::catch_unwind(|| Self::open_inner(ordinal, spec)).unwrap_or_else(|_| {
            Err(device_error(
                ordinal,
                "opening CUDA",
                "the driver library lacks a required symbol",
            ))
        })
    }

    fn open_inner(ordinal: usize, spec: &ModelSpec) -> Result<Self, LearnError> {
        let err = |what: &'static str| move |e: DriverError| device_error(ordinal, what, e);
        let count = CudaContext::device_count().map_err(err("counting devices"))?;
        if i64::from(count) <= ordinal as i64 {
            return Err(device_error(
                ordinal,
                "opening CUDA",
                format!("{count} device(s) found"),
            ));
        }
        let context = CudaContext::new(ordinal).map_err(err("creating a context"))?;
        let stream = context.default_stream();
        let ptx = compile_ptx_with_opts(
            KERNELS,
            CompileOptions {
                name: Some("tidewater_learn.cu".into()),
                ..Default::default()
            },
        )
        .map_err(|e| device_error(ordinal, "compiling kernels with NVRTC", e))?;
        let module = context.load_module(ptx).map_err(err("loading kernels"))?;
        let load = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| device_error(ordinal, name, e))
        };
        let kernels = Kernels {
            linear_forward: load("linear_forward")?,
            mlp_hidden: load("mlp_hidden")?,
            mlp_output: load("mlp_output")?,
            output_grad: load("output_grad")?,
            linear_backward: load("linear_backward")?,
            mlp_backward: load("mlp_backward")?,
            sgd_update: load("sgd_update")?,
            adam_update: load("adam_update")?,
        };
        let host = OnlineModel::new(spec);
        let (dim, hidden) = host.shape();
        let n = host.params().len();
        let params = stream
            .clone_htod(host.params())
            .map_err(err("uploading parameters"))?;
        let gradient = stream.alloc_zeros(n).map_err(err("allocating"))?;
        let moments = if matches!(spec.optimizer, OptimizerKind::Adam { .. }) {
            n
        } else {
            1
        };
        let m = stream.alloc_zeros(moments).map_err(err("allocating"))?;
        let v = stream.alloc_zeros(moments).map_err(err("allocating"))?;
        Ok(CudaTrainer {
            ordinal,
            stream,
            kernels,
            dim,
            hidden: match spec.kind {
                ModelKind::Linear => 0,
                ModelKind::Mlp { .. } => hidden,
            },
            loss: spec.loss,
            optimizer: spec.optimizer,
            l2: spec.l2,
            host,
            params,
            gradient,
            m,
            v,
            steps: 0,
            dirty: false,
            marked: vec![false; dim as usize],
        })
    }

    fn err(&self, what: &'static str) -> impl Fn(DriverError) -> LearnError {
        let ordinal = self.ordinal;
        move |e| device_error(ordinal, what, e)
    }

    /// The batch in CSR form, and the parameters it touches.
    fn pack(&mut self, batch: &[(SparseFeatures, f32)]) -> Csr {
        let (dim, hidden) = (self.dim as usize, self.hidden as usize);
        let mut csr = Csr::default();
        csr.row_ptr.push(0);
        let mut rows = Vec::new();
        for (x, y) in batch {
            for &(i, v) in x {
                let k = i as usize;
                if k >= dim {
                    continue;
                }
                csr.idx.push(i as i32);
                csr.val.push(v);
                if !self.marked[k] {
                    self.marked[k] = true;
                    rows.push(k);
                }
            }
            csr.row_ptr.push(csr.idx.len() as i32);
            csr.y.push(*y);
        }
        for &k in &rows {
            self.marked[k] = false;
            if hidden == 0 {
                csr.touched.push(k as i32);
            } else {
                csr.touched
                    .extend((k * hidden..(k + 1) * hidden).map(|p| p as i32));
            }
        }
        if hidden > 0 {
            csr.touched
                .extend((dim * hidden..dim * hidden + 2 * hidden + 1).map(|p| p as i32));
        }
        // Kernels index at least one element: pad (index -1 is skipped).
        if csr.idx.is_empty() {
            csr.idx.push(-1);
            csr.val.push(0.0);
        }
        if csr.touched.is_empty() {
            csr.touched.push(0);
        }
        csr
    }
}

#[derive(Default)]
struct Csr {
    idx: Vec<i32>,
    val: Vec<f32>,
    row_ptr: Vec<i32>,
    y: Vec<f32>,
    touched: Vec<i32>,
}

impl Trainer for CudaTrainer {
    fn train_batch(&mut self, batch: &[(SparseFeatures, f32)]) -> Result<Vec<f32>, LearnError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let csr = self.pack(batch);
        let s = Arc::clone(&self.stream);
        let rows = batch.len() as i32;
        let (dim, hidden) = (self.dim as i32, self.hidden as i32);
        let idx = s
            .clone_htod(&csr.idx)
            .map_err(self.err("uploading a batch"))?;
        let val = s
            .clone_htod(&csr.val)
            .map_err(self.err("uploading a batch"))?;
        let row_ptr = s
            .clone_htod(&csr.row_ptr)
            .map_err(self.err("uploading a batch"))?;
        let y = s
            .clone_htod(&csr.y)
            .map_err(self.err("uploading a batch"))?;
        let touched = s
            .clone_htod(&csr.touched)
            .map_err(self.err("uploading a batch"))?;
        let touched_n = csr.touched.len() as i32;
        let mut z = s
            .alloc_zeros::<f32>(batch.len())
            .map_err(self.err("allocating"))?;
        let mut d = s
            .alloc_zeros::<f32>(batch.len())
            .map_err(self.err("allocating"))?;
        let hidden_len = (batch.len() * self.hidden.max(1) as usize).max(1);
        let mut h = s
            .alloc_zeros::<f32>(hidden_len)
            .map_err(self.err("allocating"))?;
        let (loss_kind, delta) = match self.loss {
            Loss::Squared => (0i32, 0.0f32),
            Loss::Huber { delta } => (1, delta),
            Loss::Logistic => (2, 0.0),
        };
        let scale = 1.0f32 / batch.len() as f32;
        let by_row = launch_1d(batch.len());
        let by_unit = launch_1d(batch.len() * self.hidden.max(1) as usize);
        let k = &self.kernels;
        // SAFETY (every launch below): each kernel's parameters, in
        // `KERNELS`, match the pushed arguments in number, order and type
        // (device pointers to f32/i32, then i32 and f32 scalars). Sizes:
        // `idx`/`val` hold `row_ptr[rows]` entries (at least 1), `row_ptr`
        // rows + 1, `y`/`z`/`d` rows, `h` rows × hidden, `params` and
        // `gradient` the model's parameter count, `m`/`v` that count under
        // Adam, and `touched` `touched_n` indices all below the parameter
        // count (built by `pack` from in-range feature indices). Every
        // kernel bounds its thread index by the counts it is given, and the
        // stream orders the launches.
        unsafe {
            if hidden == 0 {
                s.launch_builder(&k.linear_forward)
                    .arg(&self.params)
                    .arg(&idx)
                    .arg(&val)
                    .arg(&row_ptr)
                    .arg(&rows)
                    .arg(&dim)
                    .arg(&mut z)
                    .launch(by_row)
                    .map_err(self.err("linear_forward"))?;
            } else {
                s.launch_builder(&k.mlp_hidden)
                    .arg(&self.params)
                    .arg(&idx)
                    .arg(&val)
                    .arg(&row_ptr)
                    .arg(&rows)
                    .arg(&dim)
                    .arg(&hidden)
                    .arg(&mut h)
                    .launch(by_unit)
                    .map_err(self.err("mlp_hidden"))?;
                s.launch_builder(&k.mlp_output)
                    .arg(&self.params)
                    .arg(&h)
                    .arg(&rows)
                    .arg(&dim)
                    .arg(&hidden)
                    .arg(&mut z)
                    .launch(by_row)
                    .map_err(self.err("mlp_output"))?;
            }
            s.launch_builder(&k.output_grad)
                .arg(&z)
                .arg(&y)
                .arg(&rows)
                .arg(&loss_kind)
                .arg(&delta)
                .arg(&scale)
                .arg(&mut d)
                .launch(by_row)
                .map_err(self.err("output_grad"))?;
            if hidden == 0 {
                s.launch_builder(&k.linear_backward)
                    .arg(&d)
                    .arg(&idx)
                    .arg(&val)
                    .arg(&row_ptr)
                    .arg(&rows)
                    .arg(&dim)
                    .arg(&mut self.gradient)
                    .launch(by_row)
                    .map_err(self.err("linear_backward"))?;
            } else {
                s.launch_builder(&k.mlp_backward)
                    .arg(&self.params)
                    .arg(&h)
                    .arg(&d)
                    .arg(&idx)
                    .arg(&val)
                    .arg(&row_ptr)
                    .arg(&rows)
                    .arg(&dim)
                    .arg(&hidden)
                    .arg(&mut self.gradient)
                    .launch(by_unit)
                    .map_err(self.err("mlp_backward"))?;
            }
            self.steps += 1;
            let by_param = launch_1d(csr.touched.len());
            match self.optimizer {
                OptimizerKind::Sgd { learning_rate } => {
                    s.launch_builder(&k.sgd_update)
                        .arg(&mut self.params)
                        .arg(&mut self.gradient)
                        .arg(&touched)
                        .arg(&touched_n)
                        .arg(&self.l2)
                        .arg(&learning_rate)
                        .launch(by_param)
                        .map_err(self.err("sgd_update"))?;
                }
                OptimizerKind::Adam { learning_rate } => {
                    let t = self.steps.min(i32::MAX as u64) as i32;
                    let step = learning_rate * (1.0 - ADAM_BETA2.powi(t)).sqrt()
                        / (1.0 - ADAM_BETA1.powi(t));
                    s.launch_builder(&k.adam_update)
                        .arg(&mut self.params)
                        .arg(&mut self.gradient)
                        .arg(&mut self.m)
                        .arg(&mut self.v)
                        .arg(&touched)
                        .arg(&touched_n)
                        .arg(&self.l2)
                        .arg(&step)
                        .arg(&ADAM_BETA1)
                        .arg(&ADAM_BETA2)
                        .arg(&ADAM_EPSILON)
                        .launch(by_param)
                        .map_err(self.err("adam_update"))?;
                }
            }
        }
        let outputs = s.clone_dtoh(&z).map_err(self.err("reading outputs"))?;
        self.host.add_samples(batch.len() as u64);
        self.dirty = true;
        Ok(outputs)
    }

    fn model(&mut self) -> Result<&OnlineModel, LearnError> {
        if self.dirty {
            let params = self
                .stream
                .clone_dtoh(&self.params)
                .map_err(self.err("reading parameters"))?;
            let host = self.host.params_mut();
            if params.len() != host.len() {
                return Err(device_error(
                    self.ordinal,
                    "reading parameters",
                    format!("{} values for {} parameters", params.len(), host.len()),
                ));
            }
            host.copy_from_slice(&params);
            self.dirty = false;
        }
        Ok(&self.host)
    }

    fn device(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::learner::CpuTrainer;
    use crate::learn::FeatureHasher;

    fn batches() -> Vec<Vec<(SparseFeatures, f32)>> {
        let h = FeatureHasher::new(512);
        (0..20)
            .map(|b| {
                (0..64)
                    .map(|i| {
                        let n = b * 64 + i;
                        let mut x = h.start();
                        h.categorical(&mut x, "user", &(n % 7).to_string());
                        h.categorical(&mut x, "kind", &(n % 3).to_string());
                        h.numeric(&mut x, "size", (n % 11) as f32 / 10.0);
                        let y = (n % 7) as f32 * 0.3 + (n % 11) as f32 * 0.05;
                        (
                            x,
                            if b % 2 == 0 {
                                y
                            } else {
                                f32::from(u8::from(y > 1.0))
                            },
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// CPU and GPU training agree within f32 tolerance, for the linear model
    /// and the MLP, with SGD and Adam, squared and logistic losses. Needs a
    /// CUDA device: without one it says so and returns.
    #[test]
    fn gpu_matches_cpu_within_f32_tolerance() {
        if !available() {
            eprintln!(
                "SKIPPED gpu_matches_cpu_within_f32_tolerance: no CUDA driver, NVRTC or device \
                 on this machine, so the GPU path cannot run here"
            );
            return;
        }
        let data = batches();
        let optimizers = [
            OptimizerKind::Sgd {
                learning_rate: 0.05,
            },
            OptimizerKind::Adam {
                learning_rate: 0.01,
            },
        ];
        for kind in [ModelKind::Linear, ModelKind::Mlp { hidden: 8 }] {
            for optimizer in optimizers {
                for loss in [Loss::Squared, Loss::Logistic] {
                    let spec = ModelSpec {
                        kind,
                        dim: 512,
                        loss,
                        optimizer,
                        l2: 1e-4,
                        seed: 11,
                    };
                    let mut cpu = CpuTrainer::new(&spec);
                    let mut gpu = CudaTrainer::open(0, &spec).expect("device available");
                    for batch in &data {
                        let a = cpu.train_batch(batch).expect("cpu");
                        let b = gpu.train_batch(batch).expect("gpu");
                        for (x, y) in a.iter().zip(&b) {
                            assert!(
                                (x - y).abs() <= 1e-3 * (1.0 + x.abs()),
                                "{spec:?}: {x} vs {y}"
                            );
                        }
                    }
                    let a = cpu.model().expect("cpu").params().to_vec();
                    let b = gpu.model().expect("gpu").params().to_vec();
                    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                        assert!(
                            (x - y).abs() <= 1e-3 * (1.0 + x.abs()),
                            "{spec:?} parameter {i}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn auto_falls_back_to_the_cpu_without_a_device() {
        let spec = ModelSpec {
            kind: ModelKind::Linear,
            dim: 16,
            loss: Loss::Squared,
            optimizer: OptimizerKind::Sgd { learning_rate: 0.1 },
            l2: 0.0,
            seed: 1,
        };
        let trainer =
            crate::learn::learner::open_trainer(crate::learn::settings::DeviceChoice::Auto, &spec)
                .expect("auto always opens");
        if available() {
            assert_eq!(trainer.device(), "cuda:0");
        } else {
            assert_eq!(trainer.device(), "cpu");
            let err = CudaTrainer::open(0, &spec).err().expect("no device here");
            assert!(err.to_string().starts_with("device cuda:0"), "{err}");
        }
    }
}

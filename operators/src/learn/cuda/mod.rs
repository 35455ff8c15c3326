//! Training on a CUDA device through `cudarc`, loaded dynamically: the
//! binary starts and trains on the CPU where no driver is installed.
//!
//! ```text
//!  host mini-batch ─► CSR (indices, values, row offsets, targets, touched params) ─► device
//!     (or a window of a ResidentBatches set uploaded once: resident.rs)
//!     linear:  linear_step                  forward, dL/dz and backward in one pass
//!     MLP:     mlp_hidden ─► mlp_output ─► output_grad ─► mlp_backward
//!     update:  sgd_update | adam_update over touched params  (then the gradient is zeroed)
//!  raw outputs before the step ─► host (for progressive metrics); parameters ─► host on publish
//! ```
//!
//! The kernels ([`kernels.cu`](./kernels.cu)) are compiled at start with
//! NVRTC and follow the CPU code's math ([`LinearModel`](super::LinearModel),
//! [`Mlp`](super::Mlp)): the same parameter layout, the same lazy L2 on
//! touched parameters, the same Adam bias correction; only the order of
//! floating-point sums differs. Every launch of a step is queued on one
//! stream without waiting; only reading results back synchronizes.
//!
//! This is the one module allowed `unsafe`: `cudarc` marks kernel launches
//! and its library probes unsafe, because the compiler cannot check a
//! kernel's signature against its arguments. Each block states why it
//! holds.
#![allow(unsafe_code)]

mod csr;
mod resident;

pub use resident::ResidentBatches;

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, DriverError, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};

use self::csr::{BatchExtent, CsrBatches, CsrPacker};
use super::learner::{LearnError, Trainer};
use super::loss::Loss;
use super::model::{ModelKind, ModelSpec, OnlineModel};
use super::optim::{OptimizerKind, ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON};
use super::SparseFeatures;

/// The kernels, compiled by NVRTC when a trainer opens.
const KERNELS: &str = include_str!("kernels.cu");

struct Kernels {
    linear_step: CudaFunction,
    mlp_hidden: CudaFunction,
    mlp_output: CudaFunction,
    output_grad: CudaFunction,
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

/// Per-row device scratch (raw outputs, output gradients, hidden
/// activations), grown to the largest batch seen so steps allocate nothing.
struct Scratch {
    rows: usize,
    z: CudaSlice<f32>,
    d: CudaSlice<f32>,
    h: CudaSlice<f32>,
}

/// One mini-batch on the device: windows of uploaded CSR arrays.
struct DeviceBatch<'a> {
    /// All indices and values (row offsets are absolute into these).
    idx: CudaView<'a, i32>,
    val: CudaView<'a, f32>,
    /// `rows + 1` offsets.
    row_ptr: CudaView<'a, i32>,
    /// `rows` targets.
    y: CudaView<'a, f32>,
    /// The parameters the batch touches.
    touched: CudaView<'a, i32>,
    rows: usize,
}

/// Packed CSR arrays in device memory (see [`csr`]).
struct DeviceCsr {
    idx: CudaSlice<i32>,
    val: CudaSlice<f32>,
    row_ptr: CudaSlice<i32>,
    y: CudaSlice<f32>,
    touched: CudaSlice<i32>,
}

impl<'a> DeviceBatch<'a> {
    /// The window of `extent` in uploaded arrays.
    fn window(csr: &'a DeviceCsr, extent: BatchExtent) -> Self {
        let rows = extent.first_row..extent.first_row + extent.rows;
        DeviceBatch {
            idx: csr.idx.slice(..),
            val: csr.val.slice(..),
            row_ptr: csr.row_ptr.slice(rows.start..rows.end + 1),
            y: csr.y.slice(rows),
            touched: csr
                .touched
                .slice(extent.first_touched..extent.first_touched + extent.touched),
            rows: extent.rows,
        }
    }
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
    scratch: Scratch,
    steps: u64,
    /// Whether the device has steps the host copy lacks.
    dirty: bool,
    packer: CsrPacker,
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

/// A count as the kernels' `int`, or an error naming what overflowed.
fn as_i32(ordinal: usize, what: &str, n: usize) -> Result<i32, LearnError> {
    i32::try_from(n).map_err(|_| device_error(ordinal, what, format!("{n} exceeds i32")))
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
        // SAFETY: a trainer allocates, launches and copies on this one
        // stream only, which orders all uses of its buffers, so cudarc's
        // cross-stream events (two per allocation) are not needed.
        unsafe { context.disable_event_tracking() };
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
            linear_step: load("linear_step")?,
            mlp_hidden: load("mlp_hidden")?,
            mlp_output: load("mlp_output")?,
            output_grad: load("output_grad")?,
            mlp_backward: load("mlp_backward")?,
            sgd_update: load("sgd_update")?,
            adam_update: load("adam_update")?,
        };
        let host = OnlineModel::new(spec);
        let (dim, hidden) = host.shape();
        let hidden = match spec.kind {
            ModelKind::Linear => 0,
            ModelKind::Mlp { .. } => hidden,
        };
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
        let scratch = Scratch {
            rows: 1,
            z: stream.alloc_zeros(1).map_err(err("allocating"))?,
            d: stream.alloc_zeros(1).map_err(err("allocating"))?,
            h: stream.alloc_zeros(1).map_err(err("allocating"))?,
        };
        Ok(CudaTrainer {
            ordinal,
            stream,
            kernels,
            dim,
            hidden,
            loss: spec.loss,
            optimizer: spec.optimizer,
            l2: spec.l2,
            host,
            params,
            gradient,
            m,
            v,
            scratch,
            steps: 0,
            dirty: false,
            packer: CsrPacker::new(dim, hidden),
        })
    }

    fn err(&self, what: &'static str) -> impl Fn(DriverError) -> LearnError {
        let ordinal = self.ordinal;
        move |e| device_error(ordinal, what, e)
    }

    /// Packs `batches` into padded CSR arrays the kernels can index.
    fn pack<'b>(
        &mut self,
        batches: impl IntoIterator<Item = &'b [(SparseFeatures, f32)]>,
    ) -> Result<CsrBatches, LearnError> {
        let mut csr = CsrBatches::default();
        for batch in batches {
            self.packer.push(&mut csr, batch);
        }
        csr.pad();
        if !csr.fits_i32() {
            return Err(device_error(
                self.ordinal,
                "packing batches",
                "more non-zeros than 32-bit offsets address",
            ));
        }
        Ok(csr)
    }

    /// Uploads packed arrays.
    fn upload(&self, csr: &CsrBatches) -> Result<DeviceCsr, LearnError> {
        let s = &self.stream;
        let e = self.err("uploading a batch");
        Ok(DeviceCsr {
            idx: s.clone_htod(&csr.idx).map_err(&e)?,
            val: s.clone_htod(&csr.val).map_err(&e)?,
            row_ptr: s.clone_htod(&csr.row_ptr).map_err(&e)?,
            y: s.clone_htod(&csr.y).map_err(&e)?,
            touched: s.clone_htod(&csr.touched).map_err(&e)?,
        })
    }

    /// Uploads `batches` once, to train on again and again with
    /// [`train_resident`](Self::train_resident) without host traffic.
    pub fn upload_batches(
        &mut self,
        batches: &[&[(SparseFeatures, f32)]],
    ) -> Result<ResidentBatches, LearnError> {
        let csr = self.pack(batches.iter().copied())?;
        Ok(ResidentBatches {
            arrays: self.upload(&csr)?,
            extents: csr.extents,
        })
    }

    /// Queues one optimizer step on resident batch `index` (no waiting:
    /// call [`synchronize`](Self::synchronize) to wait for the queue).
    pub fn train_resident(
        &mut self,
        set: &ResidentBatches,
        index: usize,
    ) -> Result<(), LearnError> {
        let extent = *set.extents.get(index).ok_or_else(|| {
            device_error(
                self.ordinal,
                "training",
                format!("batch {index} of a set of {}", set.extents.len()),
            )
        })?;
        let batch = DeviceBatch::window(&set.arrays, extent);
        self.enqueue_step(&batch)?;
        self.host.add_samples(extent.rows as u64);
        self.dirty = true;
        Ok(())
    }

    /// Waits until every queued step has run.
    pub fn synchronize(&self) -> Result<(), LearnError> {
        self.stream.synchronize().map_err(self.err("synchronizing"))
    }

    /// Grows the scratch buffers to at least `rows` rows.
    fn reserve_rows(&mut self, rows: usize) -> Result<(), LearnError> {
        if rows <= self.scratch.rows {
            return Ok(());
        }
        let s = &self.stream;
        let e = self.err("allocating scratch");
        self.scratch = Scratch {
            rows,
            z: s.alloc_zeros(rows).map_err(&e)?,
            d: s.alloc_zeros(rows).map_err(&e)?,
            h: s.alloc_zeros(rows * self.hidden.max(1) as usize)
                .map_err(&e)?,
        };
        Ok(())
    }

    /// Queues the kernels of one step; the raw outputs before the step are
    /// left in `scratch.z[..rows]`.
    fn enqueue_step(&mut self, batch: &DeviceBatch<'_>) -> Result<(), LearnError> {
        let ordinal = self.ordinal;
        self.reserve_rows(batch.rows)?;
        let rows = as_i32(ordinal, "rows", batch.rows)?;
        let touched_n = as_i32(ordinal, "touched parameters", batch.touched.len())?;
        let units = batch.rows * self.hidden.max(1) as usize;
        as_i32(ordinal, "rows × hidden units", units)?;
        let (dim, hidden) = (self.dim as i32, self.hidden as i32);
        let (loss_kind, delta) = match self.loss {
            Loss::Squared => (0i32, 0.0f32),
            Loss::Huber { delta } => (1, delta),
            Loss::Logistic => (2, 0.0),
        };
        let scale = 1.0f32 / batch.rows.max(1) as f32;
        let by_row = launch_1d(batch.rows);
        let by_unit = launch_1d(units);
        let by_param = launch_1d(batch.touched.len());
        let s = Arc::clone(&self.stream);
        let k = &self.kernels;
        let e = |what: &'static str| move |err: DriverError| device_error(ordinal, what, err);
        let scratch = &mut self.scratch;
        self.steps += 1;
        // SAFETY (every launch below): each kernel's parameters, in
        // `kernels.cu`, match the pushed arguments in number, order and type
        // (device pointers to f32/i32, then i32 and f32 scalars). Sizes: the
        // batch's `row_ptr` window holds rows + 1 absolute offsets into
        // `idx`/`val` (built by `CsrPacker`, so every offset is within
        // them), `y` rows targets, scratch `z`/`d` at least rows and `h` at
        // least rows × hidden (`reserve_rows`), `params` and `gradient` the
        // model's parameter count, `m`/`v` that count under Adam, and
        // `touched` `touched_n` indices below the parameter count (from
        // in-range feature indices). Every kernel bounds its thread index by
        // the counts it is given and skips feature indices outside
        // [0, dim); the stream orders the launches.
        unsafe {
            if hidden == 0 {
                s.launch_builder(&k.linear_step)
                    .arg(&self.params)
                    .arg(&batch.idx)
                    .arg(&batch.val)
                    .arg(&batch.row_ptr)
                    .arg(&batch.y)
                    .arg(&rows)
                    .arg(&dim)
                    .arg(&loss_kind)
                    .arg(&delta)
                    .arg(&scale)
                    .arg(&mut scratch.z)
                    .arg(&mut self.gradient)
                    .launch(by_row)
                    .map_err(e("linear_step"))?;
            } else {
                s.launch_builder(&k.mlp_hidden)
                    .arg(&self.params)
                    .arg(&batch.idx)
                    .arg(&batch.val)
                    .arg(&batch.row_ptr)
                    .arg(&rows)
                    .arg(&dim)
                    .arg(&hidden)
                    .arg(&mut scratch.h)
                    .launch(by_unit)
                    .map_err(e("mlp_hidden"))?;
                s.launch_builder(&k.mlp_output)
                    .arg(&self.params)
                    .arg(&scratch.h)
                    .arg(&rows)
                    .arg(&dim)
                    .arg(&hidden)
                    .arg(&mut scratch.z)
                    .launch(by_row)
                    .map_err(e("mlp_output"))?;
                s.launch_builder(&k.output_grad)
                    .arg(&scratch.z)
                    .arg(&batch.y)
                    .arg(&rows)
                    .arg(&loss_kind)
                    .arg(&delta)
                    .arg(&scale)
                    .arg(&mut scratch.d)
                    .launch(by_row)
                    .map_err(e("output_grad"))?;
                s.launch_builder(&k.mlp_backward)
                    .arg(&self.params)
                    .arg(&scratch.h)
                    .arg(&scratch.d)
                    .arg(&batch.idx)
                    .arg(&batch.val)
                    .arg(&batch.row_ptr)
                    .arg(&rows)
                    .arg(&dim)
                    .arg(&hidden)
                    .arg(&mut self.gradient)
                    .launch(by_unit)
                    .map_err(e("mlp_backward"))?;
            }
            match self.optimizer {
                OptimizerKind::Sgd { learning_rate } => {
                    s.launch_builder(&k.sgd_update)
                        .arg(&mut self.params)
                        .arg(&mut self.gradient)
                        .arg(&batch.touched)
                        .arg(&touched_n)
                        .arg(&self.l2)
                        .arg(&learning_rate)
                        .launch(by_param)
                        .map_err(e("sgd_update"))?;
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
                        .arg(&batch.touched)
                        .arg(&touched_n)
                        .arg(&self.l2)
                        .arg(&step)
                        .arg(&ADAM_BETA1)
                        .arg(&ADAM_BETA2)
                        .arg(&ADAM_EPSILON)
                        .launch(by_param)
                        .map_err(e("adam_update"))?;
                }
            }
        }
        Ok(())
    }
}

impl Trainer for CudaTrainer {
    fn train_batch(&mut self, batch: &[(SparseFeatures, f32)]) -> Result<Vec<f32>, LearnError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let csr = self.pack([batch])?;
        let extent = csr.extents[0];
        let arrays = self.upload(&csr)?;
        let window = DeviceBatch::window(&arrays, extent);
        self.enqueue_step(&window)?;
        let outputs = self
            .stream
            .clone_dtoh(&self.scratch.z.slice(..batch.len()))
            .map_err(self.err("reading outputs"))?;
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
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::learn::learner::CpuTrainer;
    use crate::learn::FeatureHasher;

    /// 20 batches of 64 random samples: hashed categorical and numeric
    /// features, regression targets on even batches and 0/1 labels on odd.
    fn random_batches(seed: u64) -> Vec<Vec<(SparseFeatures, f32)>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = FeatureHasher::new(512);
        (0..20)
            .map(|b| {
                (0..64)
                    .map(|_| {
                        let user = rng.random_range(0..7u32);
                        let kind = rng.random_range(0..3u32);
                        let size: f32 = rng.random_range(0.0..1.0);
                        let mut x = h.start();
                        h.categorical(&mut x, "user", &user.to_string());
                        h.categorical(&mut x, "kind", &kind.to_string());
                        h.numeric(&mut x, "size", size);
                        let y = user as f32 * 0.3 + size * 0.5 + rng.random_range(-0.1..0.1);
                        let target = if b % 2 == 0 {
                            y
                        } else {
                            f32::from(u8::from(y > 1.0))
                        };
                        (x, target)
                    })
                    .collect()
            })
            .collect()
    }

    fn specs() -> Vec<ModelSpec> {
        let mut specs = Vec::new();
        for kind in [ModelKind::Linear, ModelKind::Mlp { hidden: 8 }] {
            for optimizer in [
                OptimizerKind::Sgd {
                    learning_rate: 0.05,
                },
                OptimizerKind::Adam {
                    learning_rate: 0.01,
                },
            ] {
                for loss in [Loss::Squared, Loss::Huber { delta: 0.5 }, Loss::Logistic] {
                    specs.push(ModelSpec {
                        kind,
                        dim: 512,
                        loss,
                        optimizer,
                        l2: 1e-4,
                        seed: 11,
                    });
                }
            }
        }
        specs
    }

    fn assert_close(spec: &ModelSpec, what: &str, cpu: &[f32], gpu: &[f32]) {
        assert_eq!(cpu.len(), gpu.len(), "{spec:?} {what}");
        for (i, (x, y)) in cpu.iter().zip(gpu).enumerate() {
            assert!(
                (x - y).abs() <= 1e-3 * (1.0 + x.abs()),
                "{spec:?} {what} {i}: cpu {x} vs gpu {y}"
            );
        }
    }

    /// CPU and GPU training agree within f32 tolerance on fresh random
    /// inputs (the seed is printed), for the linear model and the MLP, with
    /// SGD and Adam and every loss, through both device paths (batches
    /// uploaded per step, and resident batches). Needs a CUDA device:
    /// without one it says so and returns, since the GPU path cannot run.
    #[test]
    fn gpu_matches_cpu_within_f32_tolerance() {
        if !available() {
            eprintln!(
                "SKIPPED gpu_matches_cpu_within_f32_tolerance: no CUDA driver, NVRTC or device \
                 on this machine, so the GPU path cannot run here"
            );
            return;
        }
        let seed: u64 = rand::random();
        eprintln!("gpu_matches_cpu_within_f32_tolerance: seed {seed}");
        let data = random_batches(seed);
        for spec in specs() {
            let mut cpu = CpuTrainer::new(&spec);
            let mut gpu = CudaTrainer::open(0, &spec).expect("device available");
            for batch in &data {
                let a = cpu.train_batch(batch).expect("cpu");
                let b = gpu.train_batch(batch).expect("gpu");
                assert_close(&spec, "output", &a, &b);
            }
            let a = cpu.model().expect("cpu").params().to_vec();
            let b = gpu.model().expect("gpu").params().to_vec();
            assert_close(&spec, "parameter", &a, &b);
            assert_eq!(gpu.model().expect("gpu").samples(), 20 * 64);

            let mut resident = CudaTrainer::open(0, &spec).expect("device available");
            let views: Vec<&[(SparseFeatures, f32)]> = data.iter().map(Vec::as_slice).collect();
            let set = resident.upload_batches(&views).expect("upload");
            assert_eq!(set.len(), 20);
            for i in 0..set.len() {
                resident.train_resident(&set, i).expect("step");
            }
            resident.synchronize().expect("sync");
            let c = resident.model().expect("gpu").params().to_vec();
            assert_close(&spec, "resident parameter", &a, &c);
            assert!(resident.train_resident(&set, 20).is_err());
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

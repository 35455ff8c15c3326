// Tidewater's learner kernels, compiled at run time by NVRTC (see mod.rs).
//
// A mini-batch is in CSR form: row r's features are idx/val[row_ptr[r] ..
// row_ptr[r + 1]] (row_ptr holds absolute offsets, so a batch can be a window
// of a larger uploaded set), its target y[r]. Parameters follow the CPU
// layout: the linear model is w[dim]; the MLP is W1[dim * hidden] (row i =
// feature i), b1[hidden], w2[hidden], b2. Gradients are accumulated with
// atomics and applied, with lazy L2, to the parameters the batch touched;
// the update zeroes the gradient it read.

// dL/dz for one row. loss: 0 squared, 1 Huber(delta), 2 logistic.
__device__ float loss_grad(float z, float y, int loss, float delta) {
    float e = z - y;
    if (loss == 0) return e;
    if (loss == 1) return fminf(fmaxf(e, -delta), delta);
    float s = z >= 0.0f ? 1.0f / (1.0f + expf(-z)) : expf(z) / (1.0f + expf(z));
    return s - y;
}

// Linear model, one thread per row: forward, loss gradient and backward in
// one pass (the weights are only read here; the update comes after).
extern "C" __global__ void linear_step(const float* w, const int* idx, const float* val,
        const int* row_ptr, const float* y, int rows, int dim, int loss, float delta,
        float scale, float* z_out, float* grad) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    int begin = row_ptr[r], end = row_ptr[r + 1];
    float z = 0.0f;
    for (int k = begin; k < end; k++) {
        int i = idx[k];
        if (i >= 0 && i < dim) z += w[i] * val[k];
    }
    z_out[r] = z;
    float d = loss_grad(z, y[r], loss, delta) * scale;
    for (int k = begin; k < end; k++) {
        int i = idx[k];
        if (i >= 0 && i < dim) atomicAdd(&grad[i], d * val[k]);
    }
}

// MLP hidden layer, one thread per (row, unit): h = tanh(W1ᵀx + b1).
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

// MLP output, one thread per row: z = w2·h + b2.
extern "C" __global__ void mlp_output(const float* p, const float* h, int rows, int dim,
        int hidden, float* out) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    int w2 = dim * hidden + hidden;
    float z = p[w2 + hidden];
    for (int j = 0; j < hidden; j++) z += h[r * hidden + j] * p[w2 + j];
    out[r] = z;
}

// d = dL/dz * scale, one thread per row.
extern "C" __global__ void output_grad(const float* z, const float* y, int rows, int loss,
        float delta, float scale, float* d) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    d[r] = loss_grad(z[r], y[r], loss, delta) * scale;
}

// MLP backward, one thread per (row, unit).
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

// SGD with lazy L2 over the touched parameters; zeroes their gradient.
extern "C" __global__ void sgd_update(float* p, float* grad, const int* touched, int n,
        float l2, float lr) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    int i = touched[t];
    float g = grad[i] + l2 * p[i];
    p[i] -= lr * g;
    grad[i] = 0.0f;
}

// Adam (bias correction folded into step) with lazy L2 over the touched
// parameters; zeroes their gradient.
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

/* min-p in one pass over the logits: the tokens within log(min_p) of the best, as llama_token_data.

numpy needs three passes for this (max, a comparison, nonzero), each over a row of n_vocab floats that
llama_decode has just left cold. Here one pass keeps the maximum of every block of 64 logits; the
threshold is then compared with the block maxima, and only the few blocks that reach it are read
again, so a large vocabulary costs one pass, not three (bench/NOTES.md). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 64

typedef struct { /* llama_token_data, from llama.h */
    int32_t id;
    float logit;
    float p;
} TokenData;

static float block_max(const float *logits) {
    float best = -INFINITY;
    /* A max reduction vectorises only when the compiler may reorder it; max is exact in any order. */
#pragma omp simd reduction(max : best)
    for (int i = 0; i < BLOCK; i++)
        best = logits[i] > best ? logits[i] : best;
    return best;
}

static Py_ssize_t keep(const float *logits, Py_ssize_t start, Py_ssize_t end, float threshold, TokenData *out) {
    Py_ssize_t count = 0;
    for (Py_ssize_t i = start; i < end; i++) {
        /* Written always, counted only if kept: no branch to mispredict. */
        out[count] = (TokenData){(int32_t)i, logits[i], 0.0f};
        count += logits[i] >= threshold;
    }
    return count;
}

static Py_ssize_t min_p(const float *logits, Py_ssize_t n, float log_min_p, float *maxima, TokenData *out) {
    Py_ssize_t blocks = n / BLOCK;
    float top = -INFINITY;
    for (Py_ssize_t b = 0; b < blocks; b++) {
        maxima[b] = block_max(logits + b * BLOCK);
        top = maxima[b] > top ? maxima[b] : top;
    }
    for (Py_ssize_t i = blocks * BLOCK; i < n; i++)
        top = logits[i] > top ? logits[i] : top;
    float threshold = top + log_min_p;
    Py_ssize_t count = 0;
    for (Py_ssize_t b = 0; b < blocks; b++)
        if (maxima[b] >= threshold)
            count += keep(logits, b * BLOCK, (b + 1) * BLOCK, threshold, out + count);
    return count + keep(logits, blocks * BLOCK, n, threshold, out + count);
}

PyDoc_STRVAR(min_p_doc,
"min_p(logits, log_min_p, out) -> int\n\n"
"Write the tokens whose logit is at least max(logits) + log_min_p into `out`, in id order, as\n"
"llama_token_data records (id, logit, p=0); return how many. `logits`: contiguous float32;\n"
"`out`: a writable buffer with room for one 12-byte record per logit. The threshold is computed\n"
"in float32, as numpy's `logits >= logits.max() + log_min_p` does.");

static int is_float32(const char *format) {
    /* numpy writes "f", or "<f" for an array over a ctypes pointer, such as llama.cpp's logits. */
    if (*format == '@' || *format == '=' || *format == (PY_LITTLE_ENDIAN ? '<' : '>'))
        format++;
    return strcmp(format, "f") == 0;
}

static PyObject *py_min_p(PyObject *module, PyObject *args) {
    PyObject *logits_object, *out_object;
    float log_min_p;
    if (!PyArg_ParseTuple(args, "OfO", &logits_object, &log_min_p, &out_object))
        return NULL;
    Py_buffer logits, out;
    if (PyObject_GetBuffer(logits_object, &logits, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    if (PyObject_GetBuffer(out_object, &out, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&logits);
        return NULL;
    }
    Py_ssize_t n = logits.len / (Py_ssize_t)sizeof(float);
    PyObject *result = NULL;
    float *maxima = NULL;
    if (!is_float32(logits.format)) {
        PyErr_SetString(PyExc_TypeError, "min_p: the logits must be float32");
    } else if (out.len < n * (Py_ssize_t)sizeof(TokenData)) {
        PyErr_SetString(PyExc_ValueError, "min_p: `out` needs room for one 12-byte record per logit");
    } else if ((maxima = PyMem_Malloc((n / BLOCK + 1) * sizeof(float))) == NULL) {
        PyErr_NoMemory();
    } else {
        result = PyLong_FromSsize_t(min_p(logits.buf, n, log_min_p, maxima, out.buf));
    }
    PyMem_Free(maxima);
    PyBuffer_Release(&logits);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"min_p", py_min_p, METH_VARARGS, min_p_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_min_p", NULL, -1, methods};

PyMODINIT_FUNC PyInit__min_p(void) { return PyModule_Create(&module); }

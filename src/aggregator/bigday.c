/* aggregator.bigday: the dedupe marker hashes of one (subscription, expiry day) once they
 * are too many for packed bytes (see aggregator.marker_index): a set of 64-bit integers in
 * one open-addressing table of uint64 slots, linear probing, at most 3/4 full.
 *
 * Why C: a busy subscription's every event looks its hash up here and, when new, adds it.
 * Done with Python objects (bytes buckets searched with bytes.find) each cost 1 to 2 us;
 * here a lookup is one multiply and, mostly, one cache line. Memory: 8 bytes a slot, so
 * 10.7 to 21.3 bytes a hash held (the table doubles when 3/4 full), no Python object per
 * hash. A slot holding 0 is empty; the hash 0 itself is kept aside (`has_zero`).
 *
 * The slot of a hash is the top bits of the hash times 2^64 / phi (Fibonacci hashing):
 * hashes whose low bits agree still spread.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define MIN_BITS 3
#define GOLDEN UINT64_C(0x9E3779B97F4A7C15)

typedef struct {
    PyObject_HEAD
    long long day;       /* the expiry day (days since 1970-01-01, UTC) */
    uint64_t *slots;     /* 1 << bits of them */
    int bits;
    Py_ssize_t used;     /* slots holding a hash */
    int has_zero;        /* whether the hash 0 is held */
} BigDay;

static inline size_t slot_of(uint64_t hash, int bits) {
    return (size_t)((hash * GOLDEN) >> (64 - bits));
}

/* Whether the table holds `hash` (not 0); else where it would go. */
static inline int find(const uint64_t *slots, int bits, uint64_t hash, size_t *at) {
    size_t mask = ((size_t)1 << bits) - 1;
    size_t i = slot_of(hash, bits);
    for (;;) {
        uint64_t held = slots[i];
        if (held == hash) {
            *at = i;
            return 1;
        }
        if (held == 0) {
            *at = i;
            return 0;
        }
        i = (i + 1) & mask;
    }
}

static int resize(BigDay *self, int bits) {
    uint64_t *slots = PyMem_Calloc((size_t)1 << bits, sizeof(uint64_t));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (self->slots != NULL) {
        size_t old = (size_t)1 << self->bits;
        for (size_t i = 0; i < old; i++) {
            uint64_t hash = self->slots[i];
            size_t at;
            if (hash != 0 && !find(slots, bits, hash, &at)) {
                slots[at] = hash;
            }
        }
        PyMem_Free(self->slots);
    }
    self->slots = slots;
    self->bits = bits;
    return 0;
}

/* Add one hash; 1 if it was new, 0 if held already, -1 on error. */
static int add_one(BigDay *self, uint64_t hash) {
    if (hash == 0) {
        if (self->has_zero) {
            return 0;
        }
        self->has_zero = 1;
        return 1;
    }
    if ((self->used + 1) * 4 > ((Py_ssize_t)3 << self->bits)) {
        if (resize(self, self->bits + 1) < 0) {
            return -1;
        }
    }
    size_t at;
    if (find(self->slots, self->bits, hash, &at)) {
        return 0;
    }
    self->slots[at] = hash;
    self->used++;
    return 1;
}

/* Add every hash of a sequence of ints; how many were new, or -1 on error. */
static Py_ssize_t add_all(BigDay *self, PyObject *hashes) {
    PyObject *fast = PySequence_Fast(hashes, "hashes must be a sequence of ints");
    if (fast == NULL) {
        return -1;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    Py_ssize_t added = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint64_t hash = PyLong_AsUnsignedLongLong(items[i]);
        if (hash == (uint64_t)-1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        int new = add_one(self, hash);
        if (new < 0) {
            Py_DECREF(fast);
            return -1;
        }
        added += new;
    }
    Py_DECREF(fast);
    return added;
}

static PyObject *BigDay_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"day", "hashes", NULL};
    long long day;
    PyObject *hashes;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LO:BigDay", names, &day, &hashes)) {
        return NULL;
    }
    BigDay *self = (BigDay *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->day = day;
    Py_ssize_t given = PyObject_Length(hashes);
    int bits = MIN_BITS;
    while (given >= 0 && given * 4 > ((Py_ssize_t)3 << bits)) {
        bits++;
    }
    if (given < 0 || resize(self, bits) < 0 || add_all(self, hashes) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void BigDay_dealloc(BigDay *self) {
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int BigDay_contains(BigDay *self, PyObject *value) {
    uint64_t hash = PyLong_AsUnsignedLongLong(value);
    if (hash == (uint64_t)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear(); /* a negative or wider int is no 64-bit hash: not held */
        return 0;
    }
    if (hash == 0) {
        return self->has_zero;
    }
    size_t at;
    return find(self->slots, self->bits, hash, &at);
}

static Py_ssize_t BigDay_len(BigDay *self) {
    return self->used + self->has_zero;
}

static PyObject *BigDay_add(BigDay *self, PyObject *hashes) {
    Py_ssize_t added = add_all(self, hashes);
    return added < 0 ? NULL : PyLong_FromSsize_t(added);
}

static PyObject *BigDay_sizeof(BigDay *self, PyObject *Py_UNUSED(ignored)) {
    size_t size = (size_t)Py_TYPE(self)->tp_basicsize + ((size_t)sizeof(uint64_t) << self->bits);
    return PyLong_FromSize_t(size);
}

static PyObject *BigDay_get_day(BigDay *self, void *Py_UNUSED(closure)) {
    return PyLong_FromLongLong(self->day);
}

static PyMethodDef BigDay_methods[] = {
    {"add", (PyCFunction)BigDay_add, METH_O,
     "add(hashes) -> int\n--\n\nAdd the hashes (ints, 0 to 2**64 - 1) not held yet; "
     "returns how many were new."},
    {"__sizeof__", (PyCFunction)BigDay_sizeof, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef BigDay_getset[] = {
    {"day", (getter)BigDay_get_day, NULL, "the expiry day of the hashes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods BigDay_as_sequence = {
    .sq_length = (lenfunc)BigDay_len,
    .sq_contains = (objobjproc)BigDay_contains,
};

static PyTypeObject BigDayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aggregator.bigday.BigDay",
    .tp_doc = PyDoc_STR("BigDay(day, hashes)\n--\n\nOne (subscription, expiry day)'s "
                        "marker hashes: a set of 64-bit ints (module docstring)."),
    .tp_basicsize = sizeof(BigDay),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = BigDay_new,
    .tp_dealloc = (destructor)BigDay_dealloc,
    .tp_as_sequence = &BigDay_as_sequence,
    .tp_methods = BigDay_methods,
    .tp_getset = BigDay_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "aggregator.bigday",
    .m_doc = PyDoc_STR("The marker hashes of one busy (subscription, expiry day) (bigday.c)."),
    .m_size = -1,
};

PyMODINIT_FUNC PyInit_bigday(void) {
    if (PyType_Ready(&BigDayType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&BigDayType);
    if (PyModule_AddObject(m, "BigDay", (PyObject *)&BigDayType) < 0) {
        Py_DECREF(&BigDayType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

/* aggregator.bigday: the dedupe marker hashes of one (subscription, expiry day) once they
 * are too many for packed bytes (see aggregator.marker_index): a set of 64-bit integers
 * with no Python object per hash.
 *
 * Why C: a busy subscription's every event looks its hash up here and, when new, adds it.
 * With Python-level buckets (bytes searched with bytes.find) a lookup cost about 450 to
 * 600 ns and an add about 650; here about 150 to 190 and 80 (README, "Dedupe markers").
 *
 * Layout (extendible hashing): a hash is first mixed with a seed drawn when the module is
 * imported (`mixed`): hashes alike in some bits still spread, and ids cannot be chosen so
 * that their hashes crowd one table or slot, since the placement differs in every process.
 * The top `depth` bits of the mixed hash pick an entry of
 * the directory, which points to a table; a table is an open-addressing array of uint64
 * slots (linear probing, at most 3/4 full) whose slot is picked by the mixed hash's next
 * bits. A table grows by doubling up to MAX_BITS slots; a full table at MAX_BITS splits
 * in two by its next bit instead (the directory doubles, copying pointers only, when the
 * table was already picked by all of its bits). So no add ever moves more than one
 * table's hashes, at most 3/4 of 2^MAX_BITS (about 1 ms here), whatever the set's size:
 * the worker's event loop never stalls on a growing set.
 *
 * Memory: 8 bytes a slot, tables 3/8 to 3/4 full: 10.7 to 21.3 bytes a hash. A slot
 * holding 0 is empty; the hash 0 itself is kept aside (`has_zero`).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MIN_BITS 3
#define MAX_BITS 16
#define MAX_DEPTH 20 /* a directory of at most 8 MB (see `add_one`) */

typedef struct {
    uint64_t *slots; /* 1 << bits of them */
    int bits;
    int depth;       /* the directory bits that pick this table */
    Py_ssize_t used; /* slots holding a hash */
} Table;

typedef struct {
    PyObject_HEAD
    long long day;   /* the expiry day (days since 1970-01-01, UTC) */
    Table **tables;  /* the directory: 1 << depth entries, a table under 1 << (depth -
                      * its depth) consecutive ones */
    int depth;
    Py_ssize_t count; /* distinct tables */
    Py_ssize_t size;  /* hashes held, 0 included */
    int has_zero;
} BigDay;

static uint64_t seed; /* drawn at import (os.urandom) */

/* The hash mixed with the process's seed: a bijection of 64-bit ints (MurmurHash3's
 * finalizer) whose every bit depends on every bit of the hash and of the seed. */
static inline uint64_t mixed(uint64_t hash) {
    uint64_t x = hash ^ seed;
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    return x ^ (x >> 33);
}

static inline Table *table_of(const BigDay *self, uint64_t mix) {
    return self->tables[self->depth ? mix >> (64 - self->depth) : 0];
}

/* Whether `table` holds `hash` (not 0, mixed `mix`); else where it would go. */
static inline int find(const Table *table, uint64_t hash, uint64_t mix, size_t *at) {
    size_t mask = ((size_t)1 << table->bits) - 1;
    size_t i = (size_t)((mix << table->depth) >> (64 - table->bits));
    for (;;) {
        uint64_t held = table->slots[i];
        if (held == hash || held == 0) {
            *at = i;
            return held == hash;
        }
        i = (i + 1) & mask;
    }
}

static Table *table_new(int bits, int depth) {
    Table *table = PyMem_Malloc(sizeof(Table));
    if (table == NULL) {
        return NULL;
    }
    table->slots = PyMem_Calloc((size_t)1 << bits, sizeof(uint64_t));
    if (table->slots == NULL) {
        PyMem_Free(table);
        return NULL;
    }
    table->bits = bits;
    table->depth = depth;
    table->used = 0;
    return table;
}

static void table_free(Table *table) {
    PyMem_Free(table->slots);
    PyMem_Free(table);
}

/* Put a hash known to be absent (into a table with room). */
static void place(Table *table, uint64_t hash) {
    size_t at;
    find(table, hash, mixed(hash), &at);
    table->slots[at] = hash;
    table->used++;
}

/* Double a table's slots in place of it. */
static int grow(Table *table) {
    Table *bigger = table_new(table->bits + 1, table->depth);
    if (bigger == NULL) {
        return -1;
    }
    for (size_t i = 0; i < (size_t)1 << table->bits; i++) {
        if (table->slots[i] != 0) {
            place(bigger, table->slots[i]);
        }
    }
    PyMem_Free(table->slots);
    table->slots = bigger->slots;
    table->bits = bigger->bits;
    PyMem_Free(bigger);
    return 0;
}

/* Split the table that `mix` picks into two by its next bit. */
static int split(BigDay *self, uint64_t mix) {
    Table *table = table_of(self, mix);
    if (table->depth == self->depth) { /* every directory bit in use: double it */
        size_t entries = (size_t)1 << self->depth;
        Table **doubled = PyMem_Malloc(2 * entries * sizeof(Table *));
        if (doubled == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; i < entries; i++) {
            doubled[2 * i] = doubled[2 * i + 1] = self->tables[i];
        }
        PyMem_Free(self->tables);
        self->tables = doubled;
        self->depth++;
    }
    Table *low = table_new(table->bits, table->depth + 1);
    Table *high = low == NULL ? NULL : table_new(table->bits, table->depth + 1);
    if (high == NULL) {
        if (low != NULL) {
            table_free(low);
        }
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < (size_t)1 << table->bits; i++) {
        uint64_t hash = table->slots[i];
        if (hash != 0) {
            place((mixed(hash) << table->depth) >> 63 ? high : low, hash);
        }
    }
    /* The table's directory entries: 1 << (depth - its depth) from the first one with its
     * prefix; the first half now picks `low`, the second `high`. */
    int free_bits = self->depth - table->depth;
    size_t first = (size_t)((mix >> (64 - self->depth)) >> free_bits) << free_bits;
    size_t half = (size_t)1 << (free_bits - 1);
    for (size_t i = 0; i < half; i++) {
        self->tables[first + i] = low;
        self->tables[first + half + i] = high;
    }
    table_free(table);
    self->count++;
    return 0;
}

/* Add one hash; 1 if it was new, 0 if held already, -1 on error. */
static int add_one(BigDay *self, uint64_t hash) {
    if (hash == 0) {
        if (self->has_zero) {
            return 0;
        }
        self->has_zero = 1;
        self->size++;
        return 1;
    }
    uint64_t mix = mixed(hash);
    size_t at;
    for (;;) {
        Table *table = table_of(self, mix);
        if (find(table, hash, mix, &at)) {
            return 0;
        }
        if ((table->used + 1) * 4 <= ((Py_ssize_t)3 << table->bits)) {
            table->slots[at] = hash;
            table->used++;
            self->size++;
            return 1;
        }
        /* Ids built so that their hashes share their top bits would split tables on and
         * on: past MAX_DEPTH such a table doubles instead, as a plain table would. */
        int doubles = table->bits < MAX_BITS ||
                      (table->depth == self->depth && self->depth >= MAX_DEPTH);
        if (doubles ? grow(table) : split(self, mix)) {
            if (!PyErr_Occurred()) {
                PyErr_NoMemory();
            }
            return -1;
        }
    }
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
        int new = hash == (uint64_t)-1 && PyErr_Occurred() ? -1 : add_one(self, hash);
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
    while (bits < MAX_BITS && given * 4 > ((Py_ssize_t)3 << bits)) {
        bits++;
    }
    self->tables = PyMem_Malloc(sizeof(Table *));
    if (self->tables != NULL) {
        self->tables[0] = table_new(bits, 0);
        self->count = self->tables[0] != NULL;
    }
    if (self->count == 0 && given >= 0) {
        PyErr_NoMemory();
    }
    if (given < 0 || self->count == 0 || add_all(self, hashes) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void BigDay_dealloc(BigDay *self) {
    if (self->tables != NULL) {
        size_t entries = (size_t)1 << self->depth;
        for (size_t i = 0; i < entries; i++) {
            Table *table = self->tables[i];
            /* a table's entries are consecutive: free it at its last one */
            if (table != NULL && (i + 1 == entries || self->tables[i + 1] != table)) {
                table_free(table);
            }
        }
        PyMem_Free(self->tables);
    }
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
    uint64_t mix = mixed(hash);
    size_t at;
    return find(table_of(self, mix), hash, mix, &at);
}

static Py_ssize_t BigDay_len(BigDay *self) { return self->size; }

static PyObject *BigDay_add(BigDay *self, PyObject *hashes) {
    Py_ssize_t added = add_all(self, hashes);
    return added < 0 ? NULL : PyLong_FromSsize_t(added);
}

static PyObject *BigDay_sizeof(BigDay *self, PyObject *Py_UNUSED(ignored)) {
    size_t size = (size_t)Py_TYPE(self)->tp_basicsize + (sizeof(Table *) << self->depth);
    size_t entries = (size_t)1 << self->depth;
    for (size_t i = 0; i < entries; i++) {
        Table *table = self->tables[i];
        if (i + 1 == entries || self->tables[i + 1] != table) {
            size += sizeof(Table) + (sizeof(uint64_t) << table->bits);
        }
    }
    return PyLong_FromSize_t(size);
}

static PyObject *BigDay_get_day(BigDay *self, void *Py_UNUSED(closure)) {
    return PyLong_FromLongLong(self->day);
}

static PyObject *BigDay_get_tables(BigDay *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSsize_t(self->count);
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
    {"tables", (getter)BigDay_get_tables, NULL, "how many tables hold them", NULL},
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

/* The seed, from os.urandom(8). */
static int draw_seed(void) {
    PyObject *os = PyImport_ImportModule("os");
    PyObject *drawn = os == NULL ? NULL : PyObject_CallMethod(os, "urandom", "i", 8);
    Py_XDECREF(os);
    if (drawn == NULL) {
        return -1;
    }
    memcpy(&seed, PyBytes_AS_STRING(drawn), sizeof(seed));
    Py_DECREF(drawn);
    return 0;
}

PyMODINIT_FUNC PyInit_bigday(void) {
    if (draw_seed() < 0 || PyType_Ready(&BigDayType) < 0) {
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

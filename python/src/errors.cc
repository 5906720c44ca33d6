// kvstash's error kinds as Python exceptions: kvstash.Error and one subclass per kind, each also
// deriving from the built-in exception a Python caller would catch for it (ValueError,
// FileNotFoundError, OSError, ...). `kind` is the C++ kind's name.
#include <exception>
#include <new>
#include <stdexcept>
#include <system_error>

#include "bindings.h"

namespace kvstash::py {

namespace {

PyObject* g_classes[int(ErrorKind::Internal) + 1] = {};

struct KindClass {
  ErrorKind kind;
  const char* name;
  PyObject* builtin;  // second base, or null
  const char* doc;
};

void raise(const Error& e) { PyErr_SetString(g_classes[int(e.kind())], e.what()); }

// Inside a catch block: the standard library's error as kvstash's kind, as at every other boundary.
void raise_current() {
  try {
    rethrow_as_error();
  } catch (const Error& e) {
    raise(e);
  }
}

}  // namespace

void bind_errors(nb::module_& m) {
  PyObject* base = PyErr_NewExceptionWithDoc("kvstash.Error",
                                             "Base class of every error kvstash raises; `kind` names the error kind.",
                                             PyExc_Exception, nullptr);
  m.attr("Error") = nb::steal(base);
  const KindClass kinds[] = {
      {ErrorKind::InvalidArgument, "InvalidArgumentError", PyExc_ValueError, "A value passed in is not acceptable."},
      {ErrorKind::NotFound, "NotFoundError", PyExc_FileNotFoundError, "A file, tensor or key that must exist does not."},
      {ErrorKind::Corruption, "CorruptionError", PyExc_ValueError, "Bytes are not what their format says (damaged or foreign file)."},
      {ErrorKind::IOError, "IOFailureError", PyExc_OSError, "The operating system refused a read, write, sync or rename."},
      {ErrorKind::NotSupported, "NotSupportedError", PyExc_NotImplementedError, "Well-formed, but beyond what kvstash runs."},
      {ErrorKind::ResourceExhausted, "ResourceExhaustedError", PyExc_MemoryError, "Memory, KV cache or context is full."},
      {ErrorKind::ModelMismatch, "ModelMismatchError", PyExc_ValueError, "A state or file made by another model."},
      {ErrorKind::Internal, "InternalError", PyExc_RuntimeError, "A broken invariant of kvstash itself (a bug)."},
  };
  for (const KindClass& k : kinds) {
    nb::object bases = nb::steal(PyTuple_Pack(2, base, k.builtin));
    nb::dict attrs;
    attrs["kind"] = error_kind_name(k.kind);
    const std::string qualified = std::string("kvstash.") + k.name;
    PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), k.doc, bases.ptr(), attrs.ptr());
    if (!cls) throw nb::python_error();
    g_classes[int(k.kind)] = cls;  // kept for the module's lifetime (the attribute holds a reference too)
    m.attr(k.name) = nb::borrow(cls);
  }
  PyObject* kind_attr = PyUnicode_FromString("kind");
  PyObject_SetAttr(base, kind_attr, nb::str("Error").ptr());
  Py_DECREF(kind_attr);

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      raise(e);
    } catch (const std::bad_alloc&) {
      raise_current();
    } catch (const std::length_error&) {
      raise_current();
    } catch (const std::system_error&) {  // filesystem_error too
      raise_current();
    }
  });
}

}  // namespace kvstash::py

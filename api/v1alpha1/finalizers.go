package v1alpha1

// Finalizer is set on every policy so that deleting it undoes what it did.
const Finalizer = "loadshed.io/finalizer"

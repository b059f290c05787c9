package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
	"github.com/vigil-vm/vigil/internal/runstrategy"
	"github.com/vigil-vm/vigil/internal/store"
)

// This file is the one place where errors become HTTP answers. Handlers
// return errors; errorStatus maps every kind to a Kubernetes Status.

// handlerFunc is an HTTP handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// toStatus maps an error to the Status to answer with. Errors the server
// does not recognise become a 500 whose message hides the detail (logged).
func toStatus(err error) (metav1.Status, bool) {
	var se *apierrors.StatusError
	var de *v1.DecodeError
	var ref *runstrategy.Refusal
	switch {
	case errors.As(err, &se):
		return se.ErrStatus, true
	case errors.As(err, &de):
		if de.Syntax != nil {
			return apierrors.NewBadRequest(de.Syntax.Error()).ErrStatus, true
		}
		return invalidStatus(schema.GroupKind{}, "", de.Fields), true
	case errors.As(err, &ref):
		return refusalStatus(ref), true
	case errors.Is(err, store.ErrNotFound):
		return apierrors.NewNotFound(schema.GroupResource{}, "").ErrStatus, true
	case errors.Is(err, store.ErrConflict):
		return apierrors.NewConflict(schema.GroupResource{}, "", errors.New("the object has been modified; please apply your changes to the latest version and try again")).ErrStatus, true
	case errors.Is(err, store.ErrExists):
		return apierrors.NewAlreadyExists(schema.GroupResource{}, "").ErrStatus, true
	case errors.Is(err, store.ErrCompacted), errors.Is(err, watchcache.ErrGone):
		return apierrors.NewResourceExpired("too old resource version").ErrStatus, true
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, watchcache.ErrNotReady):
		return apierrors.NewServiceUnavailable("the storage is unavailable, retry later").ErrStatus, true
	case errors.Is(err, context.DeadlineExceeded):
		return apierrors.NewTimeoutError("the request timed out", 1).ErrStatus, true
	}
	return apierrors.NewInternalError(errors.New("an internal error occurred; see the server log")).ErrStatus, false
}

// refusalStatus turns a lifecycle refusal of the core into a Status with the
// core's code and message, verbatim (clients match on the text).
func refusalStatus(ref *runstrategy.Refusal) metav1.Status {
	reason := metav1.StatusReasonUnknown
	switch ref.Code {
	case http.StatusBadRequest:
		reason = metav1.StatusReasonBadRequest
	case http.StatusConflict:
		reason = metav1.StatusReasonConflict
	case http.StatusForbidden:
		reason = metav1.StatusReasonForbidden
	case http.StatusNotFound:
		reason = metav1.StatusReasonNotFound
	case http.StatusInternalServerError:
		reason = metav1.StatusReasonInternalError
	}
	return metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(ref.Code), Reason: reason, Message: ref.Message,
	}
}

// invalidStatus is a 422 listing one cause per field, with Vigil's field
// messages ("spec.x: not supported").
func invalidStatus(gk schema.GroupKind, name string, errs field.ErrorList) metav1.Status {
	causes := make([]metav1.StatusCause, 0, len(errs))
	msgs := make([]string, 0, len(errs))
	for _, fe := range errs {
		causes = append(causes, metav1.StatusCause{Type: metav1.CauseType(fe.Type), Message: fe.ErrorBody(), Field: fe.Field})
		msgs = append(msgs, v1.FieldErrorMessage(fe))
	}
	msg := strings.Join(msgs, "; ")
	if gk.Kind != "" {
		what := gk.Kind
		if gk.Group != "" {
			what += "." + gk.Group
		}
		msg = fmt.Sprintf("%s %q is invalid: %s", what, name, msg)
	}
	return metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
		Message: msg, Details: &metav1.StatusDetails{Name: name, Group: gk.Group, Kind: gk.Kind, Causes: causes},
	}
}

func invalid(r *resource, name string, errs field.ErrorList) error {
	return &apierrors.StatusError{ErrStatus: invalidStatus(r.groupKind(), name, errs)}
}

func notFound(r *resource, name string) error {
	return apierrors.NewNotFound(r.groupResource(), name)
}

func conflict(r *resource, name string, msg string) error {
	return apierrors.NewConflict(r.groupResource(), name, errors.New(msg))
}

func badRequest(format string, args ...any) error {
	return apierrors.NewBadRequest(fmt.Sprintf(format, args...))
}

// storeErr gives a store error the resource and name it is about.
func storeErr(r *resource, name string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound(r, name)
	case errors.Is(err, store.ErrExists):
		return apierrors.NewAlreadyExists(r.groupResource(), name)
	case errors.Is(err, store.ErrConflict):
		return conflict(r, name, "the object has been modified; please apply your changes to the latest version and try again")
	}
	return err
}

// writeStatus writes s as the response.
func writeStatus(w http.ResponseWriter, s metav1.Status) {
	if s.Kind == "" {
		s.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	}
	if s.Code == 0 {
		s.Code = http.StatusInternalServerError
	}
	if s.Status == "" {
		s.Status = metav1.StatusFailure
	}
	writeJSON(w, int(s.Code), s)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding the response failed", http.StatusInternalServerError)
		return
	}
	writeRawJSON(w, code, b)
}

func writeRawJSON(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// serve adapts a handlerFunc: its error is written as a Status, and errors
// the server did not expect are logged with their detail.
func serve(log *slog.Logger, h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		st, known := toStatus(err)
		if !known {
			log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeStatus(w, st)
	}
}

func isNotFoundStatus(err error) bool { return apierrors.IsNotFound(err) }

func unauthorized() metav1.Status {
	return apierrors.NewUnauthorized("a valid bearer token is required").ErrStatus
}

func forbidden(msg string) metav1.Status {
	st := apierrors.NewForbidden(schema.GroupResource{}, "", errors.New(msg)).ErrStatus
	st.Message = msg
	return st
}

// crdcheck validates a CRD with the API server's own code, without a cluster:
// structural schema rules, CEL compilation and CEL cost estimates
// (k8s.io/apiextensions-apiserver ValidateCustomResourceDefinition).
// Optionally it then validates CustomJob objects, one JSON object per line of
// the form {"obj": {...}, "old": {...}} ("old" only for updates), against the
// schema (after defaulting) and the CEL rules, printing "ok" or the errors.
// It is the oracle the Python-side validator (customjob_testing) was
// cross-checked against. List-map key uniqueness and unknown-field rejection
// (fieldValidation=Strict) happen elsewhere in the API server and are not
// checked here.
//
//	go run . ../../bases/customjob.yaml [objects.jsonl]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

func main() {
	raw, err := os.ReadFile(os.Args[1])
	must(err)
	scheme := runtime.NewScheme()
	install.Install(scheme)
	v1crd := &apiextensionsv1.CustomResourceDefinition{}
	must(yaml.UnmarshalStrict(raw, v1crd))
	scheme.Default(v1crd)
	crd := &apiextensions.CustomResourceDefinition{}
	must(scheme.Convert(v1crd, crd, nil))
	errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), crd)
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Println("CRD INVALID:", e.Error())
		}
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "CRD valid")
	if len(os.Args) < 3 {
		return
	}
	var props *apiextensions.JSONSchemaProps
	if crd.Spec.Versions[0].Schema != nil {
		props = crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	} else {
		props = crd.Spec.Validation.OpenAPIV3Schema
	}
	ss, err := structuralschema.NewStructural(props)
	must(err)
	sv, _, err := apiservervalidation.NewSchemaValidator(props)
	must(err)
	celv := cel.NewValidator(ss, true, celconfig.PerCallLimit)
	f, err := os.Open(os.Args[2])
	must(err)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<24), 1<<24)
	for sc.Scan() {
		var item struct {
			Obj map[string]interface{} `json:"obj"`
			Old map[string]interface{} `json:"old"`
		}
		must(json.Unmarshal(sc.Bytes(), &item))
		structuraldefaulting.Default(item.Obj, ss)
		var old interface{}
		var all field.ErrorList
		if item.Old != nil {
			structuraldefaulting.Default(item.Old, ss)
			old = item.Old
			all = apiservervalidation.ValidateCustomResourceUpdate(nil, item.Obj, item.Old, sv)
		} else {
			all = apiservervalidation.ValidateCustomResource(nil, item.Obj, sv)
		}
		var oldArg interface{}
		if old != nil {
			oldArg = old
		}
		cerrs, _ := celv.Validate(context.Background(), nil, ss, item.Obj, oldArg, celconfig.RuntimeCELCostBudget)
		all = append(all, cerrs...)
		if len(all) == 0 {
			fmt.Println("ok")
		} else {
			b, _ := json.Marshal(all.ToAggregate().Error())
			fmt.Println("err", string(b))
		}
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

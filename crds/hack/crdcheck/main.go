// crdcheck validates a CRD with the API server's own code, without a cluster:
// structural schema rules, CEL compilation and CEL cost estimates
// (k8s.io/apiextensions-apiserver ValidateCustomResourceDefinition). It then
// prints, on stderr, the estimated cost of every x-kubernetes-validations rule
// (the cost the API server compares with its per-rule and per-CRD limits).
//
// Optionally it validates objects against the first version's schema, the way
// a create (or update) request is validated: unknown fields are refused as
// with fieldValidation=Strict (pruning), defaults are applied, then the
// OpenAPI schema, x-kubernetes-list-type map/set uniqueness and, unless one of
// those errors blocks it as in the API server, the CEL rules.
//
//   - objects.jsonl: one JSON object per line, {"obj": {...}, "old": {...}}
//     ("old" only for updates); prints "ok" or "err <json string>" per line.
//   - cases.json / cases.yaml (anything not ending in .jsonl): a list of
//     {"name": ..., "expect": "valid"|"invalid", "spec": {...}} (the spec is
//     wrapped into a CustomJob named after the list index) or with "object"
//     instead of "spec", and optionally "old". Prints one JSON line per case,
//     {"name", "expect", "admitted", "errors"}, and exits 1 if any case was
//     not admitted or refused as expected.
//
// It is the oracle the Python-side validator (tests/support/crd_validation.py)
// is checked against (tests/unit/test_crd_schema.py builds and runs it).
//
//	go run . ../../bases/customjob.yaml [objects.jsonl | cases.yaml]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: crdcheck CRD.yaml [objects.jsonl | cases.(json|yaml)]")
		os.Exit(2)
	}
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
	var props *apiextensions.JSONSchemaProps
	if crd.Spec.Versions[0].Schema != nil {
		props = crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	} else {
		props = crd.Spec.Validation.OpenAPIV3Schema
	}
	reportCosts(props)
	if len(os.Args) < 3 {
		return
	}
	v := newValidator(props, crd)
	if strings.HasSuffix(os.Args[2], ".jsonl") {
		v.lines(os.Args[2])
	} else if !v.cases(os.Args[2]) {
		os.Exit(1)
	}
}

// reportCosts prints "cost <path> <estimated cost>" for every rule and the
// total, computed as ValidateCustomResourceDefinition does (the rule's
// MaxCost times how often it can run, from the enclosing maxItems and
// maxProperties).
func reportCosts(props *apiextensions.JSONSchemaProps) {
	envSet := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())
	var total uint64
	var walk func(s *apiextensions.JSONSchemaProps, ctx *crdvalidation.CELSchemaContext, path *field.Path)
	walk = func(s *apiextensions.JSONSchemaProps, ctx *crdvalidation.CELSchemaContext, path *field.Path) {
		if len(s.XValidations) > 0 {
			info, err := ctx.TypeInfo()
			must(err)
			results, err := cel.Compile(info.Schema, info.DeclType, celconfig.PerCallLimit, envSet, cel.NewExpressionsEnvLoader())
			must(err)
			for i, r := range results {
				cardinality := r.MaxCardinality
				if ctx.MaxCardinality != nil {
					cardinality = *ctx.MaxCardinality
				}
				cost := saturatingMul(r.MaxCost, cardinality)
				total = saturatingAdd(total, cost)
				fmt.Fprintf(os.Stderr, "cost %s %d\n", path.Child("x-kubernetes-validations").Index(i), cost)
			}
		}
		names := make([]string, 0, len(s.Properties))
		for name := range s.Properties {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			child := s.Properties[name]
			walk(&child, ctx.ChildPropertyContext(&child, name), path.Child("properties").Key(name))
		}
		if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
			child := s.AdditionalProperties.Schema
			walk(child, ctx.ChildAdditionalPropertiesContext(child), path.Child("additionalProperties"))
		}
		if s.Items != nil && s.Items.Schema != nil {
			child := s.Items.Schema
			walk(child, ctx.ChildItemsContext(child), path.Child("items"))
		}
	}
	walk(props, crdvalidation.RootCELContext(props), field.NewPath("openAPIV3Schema"))
	fmt.Fprintf(os.Stderr, "cost total %d (limits: %d per rule, %d per CRD)\n",
		total, crdvalidation.StaticEstimatedCostLimit, crdvalidation.StaticEstimatedCRDCostLimit)
}

type validator struct {
	ss         *structuralschema.Structural
	sv         apiservervalidation.SchemaValidator
	celv       *cel.Validator
	apiVersion string
	kind       string
}

func newValidator(props *apiextensions.JSONSchemaProps, crd *apiextensions.CustomResourceDefinition) *validator {
	ss, err := structuralschema.NewStructural(props)
	must(err)
	sv, _, err := apiservervalidation.NewSchemaValidator(props)
	must(err)
	return &validator{
		ss:         ss,
		sv:         sv,
		celv:       cel.NewValidator(ss, true, celconfig.PerCallLimit),
		apiVersion: crd.Spec.Group + "/" + crd.Spec.Versions[0].Name,
		kind:       crd.Spec.Names.Kind,
	}
}

// validate returns what the API server would answer to creating obj (or
// updating old to obj); an empty list means admitted.
func (v *validator) validate(obj, old map[string]interface{}) field.ErrorList {
	var all field.ErrorList
	for _, o := range []map[string]interface{}{obj, old} {
		if o == nil {
			continue
		}
		opts := structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}
		for _, p := range pruning.PruneWithOptions(o, v.ss, true, opts) {
			all = append(all, field.Forbidden(field.NewPath(p), "unknown field (refused with fieldValidation=Strict)"))
		}
	}
	if len(all) > 0 {
		return all // a strict request is refused while decoding, before any validation
	}
	structuraldefaulting.Default(obj, v.ss)
	var oldArg interface{}
	if old != nil {
		structuraldefaulting.Default(old, v.ss)
		oldArg = old
		all = apiservervalidation.ValidateCustomResourceUpdate(nil, obj, old, v.sv)
	} else {
		all = apiservervalidation.ValidateCustomResource(nil, obj, v.sv)
	}
	all = append(all, listtype.ValidateListSetsAndMaps(nil, v.ss, obj)...)
	for _, e := range all {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong,
			field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			// The API server's hasBlockingErr: CEL would run on an object of the wrong shape.
			return append(all, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid"))
		}
	}
	cerrs, _ := v.celv.Validate(context.Background(), nil, v.ss, obj, oldArg, celconfig.RuntimeCELCostBudget)
	return append(all, cerrs...)
}

func (v *validator) lines(path string) {
	f, err := os.Open(path)
	must(err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<24), 1<<24)
	for sc.Scan() {
		var item map[string]interface{}
		must(utiljson.Unmarshal(sc.Bytes(), &item)) // integers stay int64, as in the API server
		obj, _ := item["obj"].(map[string]interface{})
		old, _ := item["old"].(map[string]interface{})
		all := v.validate(obj, old)
		if len(all) == 0 {
			fmt.Println("ok")
		} else {
			b, _ := json.Marshal(all.ToAggregate().Error())
			fmt.Println("err", string(b))
		}
	}
	must(sc.Err())
}

type caseResult struct {
	Name     string   `json:"name"`
	Expect   string   `json:"expect"`
	Admitted bool     `json:"admitted"`
	Errors   []string `json:"errors"`
}

// cases validates a JSON or YAML list of cases; false if any was not as expected.
func (v *validator) cases(path string) bool {
	raw, err := os.ReadFile(path)
	must(err)
	text, err := yaml.YAMLToJSON(raw) // JSON is YAML too
	must(err)
	var list []interface{}
	must(utiljson.Unmarshal(text, &list)) // integers stay int64, as in the API server
	asExpected := 0
	for i, item := range list {
		c, ok := item.(map[string]interface{})
		if !ok {
			must(fmt.Errorf("case %d is not a mapping", i))
		}
		for key := range c {
			if !strings.Contains(" name expect spec object old ", " "+key+" ") {
				must(fmt.Errorf("case %d: unknown key %q (known: name, expect, spec, object, old)", i, key))
			}
		}
		name, _ := c["name"].(string)
		expect, _ := c["expect"].(string)
		if expect != "valid" && expect != "invalid" {
			must(fmt.Errorf("case %d (%q): expect must be valid or invalid, got %q", i, name, expect))
		}
		obj, _ := c["object"].(map[string]interface{})
		if obj == nil {
			obj = map[string]interface{}{
				"apiVersion": v.apiVersion,
				"kind":       v.kind,
				"metadata":   map[string]interface{}{"name": fmt.Sprintf("case-%d", i), "namespace": "default"},
				"spec":       c["spec"],
			}
		}
		old, _ := c["old"].(map[string]interface{})
		all := v.validate(obj, old)
		r := caseResult{Name: name, Expect: expect, Admitted: len(all) == 0, Errors: []string{}}
		for _, e := range all {
			r.Errors = append(r.Errors, e.Error())
		}
		if r.Admitted == (expect == "valid") {
			asExpected++
		}
		b, err := json.Marshal(r)
		must(err)
		fmt.Println(string(b))
	}
	fmt.Fprintf(os.Stderr, "%d cases, %d as expected, %d not\n", len(list), asExpected, len(list)-asExpected)
	return asExpected == len(list)
}

func saturatingMul(a, b uint64) uint64 {
	if a != 0 && b > ^uint64(0)/a {
		return ^uint64(0)
	}
	return a * b
}

func saturatingAdd(a, b uint64) uint64 {
	if a > ^uint64(0)-b {
		return ^uint64(0)
	}
	return a + b
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

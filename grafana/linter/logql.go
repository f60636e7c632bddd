// VoxPulse build of github.com/grafana/dashboard-linter: this file replaces the module's
// lint/rule_target_logql_auto.go.
//
// The original parses LogQL with github.com/grafana/loki/v3/pkg/logql/syntax. Loki is under the
// AGPL, a module VoxPulse never fetches or builds (scripts/go-not-to-use.txt), and VoxPulse has no
// Loki data source: no dashboard has a LogQL target. This build keeps both LogQL rules
// (target-logql-rule and target-logql-auto-rule) and makes them report any Loki target as
// unsupported instead of parsing it, so a LogQL target can never pass unchecked.
// scripts/build-backends.sh swaps this file in (and drops the Loki requirements from the
// linter's go.mod); tests/dashboards/test_linter.py runs the result.

package lint

import (
	"errors"
	"fmt"
)

// logqlExpr stands for a parsed LogQL expression; this build parses none.
type logqlExpr struct{}

var errLogQLUnsupported = errors.New("LogQL targets are not supported by this build of the linter " +
	"(it leaves out Loki's AGPL LogQL parser; VoxPulse has no Loki data source)")

func parseLogQL(expr string, variables []Template) (logqlExpr, error) {
	if _, err := expandLogQLVariables(expr, variables); err != nil {
		return logqlExpr{}, fmt.Errorf("could not expand variables: %w", err)
	}
	return logqlExpr{}, errLogQLUnsupported
}

func NewTargetLogQLAutoRule() *TargetRuleFunc {
	return &TargetRuleFunc{
		name:        "target-logql-auto-rule",
		description: "Checks that each Loki target uses $__auto for range vectors when appropriate.",
		fn: func(d Dashboard, p Panel, t Target) TargetRuleResults {
			r := TargetRuleResults{}
			if t.Hide {
				return r
			}
			isLoki := false
			if templateDS := getTemplateDatasource(d); templateDS != nil && templateDS.Query == Loki {
				isLoki = true
			} else if ds, err := t.GetDataSource(); err == nil && ds.Type == Loki {
				isLoki = true
			}
			if !isLoki || !panelHasQueries(p) {
				return r
			}
			if _, err := parseLogQL(t.Expr, d.Templating.List); err != nil {
				r.AddError(d, p, t, fmt.Sprintf("Invalid LogQL query: %v", err))
			}
			return r
		},
	}
}

//! Permissions, named in the style of seed 004 (`workbench:group-send:create`), for every route of
//! the five seeds, grouped into three built-in roles. A route is registered with exactly one
//! [`Access`](crate::http::routes::Access), so a route without a decision cannot exist.

/// Declare the permission constants and the list of all of them in one place.
macro_rules! permissions {
    ($($name:ident = $value:literal: $doc:literal;)*) => {
        $(#[doc = $doc] pub const $name: &str = $value;)*
        /// Every permission scrm knows, for the admin role and the permission listing.
        pub const ALL: &[&str] = &[$($value),*];
    };
}

permissions! {
    // Seed 004: the group-send assistant (names exactly as the seed has them).
    GROUP_SEND_ACCOUNTS_VIEW = "workbench:wechat:group-send:accounts:view": "List sender accounts for group sends.";
    CUSTOMER_TAGS_VIEW = "workbench:customer:tags:view": "List tags with customer counts.";
    WORKBENCH_CUSTOMER_VIEW = "workbench:customer:view": "Search customers for a group send.";
    GROUP_SEND_CREATE = "workbench:group-send:create": "Create a group-send task.";
    GROUP_SEND_TASKS_VIEW = "workbench:group-send:tasks:view": "List group-send tasks.";
    GROUP_SEND_TASK_VIEW = "workbench:group-send:task:view": "See one group-send task with per-customer results.";
    // Seed 002: manual workbench tasks and automation.
    WORKBENCH_MASS_SEND_CREATE = "workbench:mass-send:create": "Start an immediate mass send.";
    WORKBENCH_AUTO_GROUP_CREATE = "workbench:auto-group:create": "Create group chats on device accounts.";
    EXPORT_FRIENDS = "workbench:export:friends": "Export customers (friends).";
    WORKFLOW_VIEW = "automation:workflow:view": "See workflows and their runs.";
    WORKFLOW_MANAGE = "automation:workflow:manage": "Create, change, enable and disable workflows.";
    WORKFLOW_RUN = "automation:workflow:run": "Start, pause, resume and cancel workflow runs.";
    AUTOMATION_TASK_VIEW = "automation:task:view": "See scheduled and event tasks.";
    AUTOMATION_TASK_MANAGE = "automation:task:manage": "Switch scheduled and event tasks.";
    CHANNEL_CODE_VIEW = "automation:channel-code:view": "See channel codes and their statistics.";
    CHANNEL_CODE_MANAGE = "automation:channel-code:manage": "Create, change and delete channel codes.";
    WELCOME_VIEW = "automation:welcome:view": "See welcome messages.";
    WELCOME_MANAGE = "automation:welcome:manage": "Change welcome messages.";
    TRAFFIC_POOL_VIEW = "automation:traffic-pool:view": "See traffic pools, their assignments and statistics.";
    TRAFFIC_POOL_MANAGE = "automation:traffic-pool:manage": "Create, change and delete traffic pools; assign customers through them.";
    DEVICE_VIEW = "automation:device:view": "See device gateways and accounts.";
    DEVICE_MANAGE = "automation:device:manage": "Manage device gateways, accounts and AI replies.";
    DEVICE_OPERATE = "automation:device:operate": "Sync device accounts' friends and switch auto-like.";
    GROUP_PUSH_CREATE = "workbench:group-push:create": "Push messages into chat rooms of device accounts.";
    GROUP_PUSH_VIEW = "workbench:group-push:view": "See group pushes and their results.";
    JOBS_VIEW = "system:jobs:view": "See jobs, queues, workers and alerts.";
    JOBS_MANAGE = "system:jobs:manage": "Retry, replay, cancel, pause and resume jobs; manage alert rules.";
    // Seed 000: operations.
    SOP_TEMPLATE_VIEW = "operation:sop:template:view": "List SOP templates.";
    SOP_TEMPLATE_CREATE = "operation:sop:template:create": "Create SOP templates.";
    SOP_TEMPLATE_UPDATE = "operation:sop:template:update": "Change SOP templates.";
    SOP_TEMPLATE_DELETE = "operation:sop:template:delete": "Delete SOP templates.";
    SOP_EXECUTE = "operation:sop:execute": "Start SOP executions by hand.";
    SOP_EXECUTION_VIEW = "operation:sop:execution:view": "List SOP executions.";
    SOP_EXECUTION_CONTROL = "operation:sop:execution:control": "Pause, resume and cancel SOP executions.";
    MASS_TASK_VIEW = "operation:mass-task:view": "List mass tasks.";
    MASS_TASK_CREATE = "operation:mass-task:create": "Create mass tasks.";
    MASS_TASK_EXECUTE = "operation:mass-task:execute": "Execute mass tasks.";
    MASS_TASK_CANCEL = "operation:mass-task:cancel": "Cancel mass tasks.";
    MATERIAL_VIEW = "operation:material:view": "See the material library.";
    MATERIAL_MANAGE = "operation:material:manage": "Add, change and delete materials.";
    OPERATION_SETTINGS_VIEW = "operation:settings:view": "See operation settings (result polling, reminders, deadlines).";
    OPERATION_SETTINGS_MANAGE = "operation:settings:manage": "Change operation settings.";
    // Seed 001: customers.
    CUSTOMER_VIEW = "customer:view": "List and see customers, their portrait and timeline.";
    CUSTOMER_CREATE = "customer:create": "Create customers.";
    CUSTOMER_UPDATE = "customer:update": "Change customers, their stage and follow-ups.";
    CUSTOMER_DELETE = "customer:delete": "Delete customers.";
    CUSTOMER_TAG = "customer:tag": "Add and remove customers' tags.";
    CUSTOMER_TRANSFER = "customer:transfer": "Assign, transfer and inherit customers.";
    CUSTOMER_BLACKLIST = "customer:blacklist": "Blacklist customers and lift it.";
    CUSTOMER_EXPORT = "customer:export": "Export customers.";
    CUSTOMER_IMPORT = "customer:import": "Import customers.";
    CUSTOMER_STATISTICS_VIEW = "customer:statistics:view": "See customer statistics.";
    CUSTOMER_RISK_VIEW = "customer:risk:view": "See deletion records and churn warnings.";
    CUSTOMER_RISK_MANAGE = "customer:risk:manage": "Configure churn rules and handle warnings.";
    TAG_VIEW = "customer:tag-library:view": "See tags and tag groups.";
    TAG_MANAGE = "customer:tag-library:manage": "Create, rename, reorder and delete tags and tag groups.";
    GROUP_CHAT_VIEW = "customer:group-chat:view": "See customer group chats and members.";
    GROUP_CHAT_MANAGE = "customer:group-chat:manage": "Tag and transfer group chats.";
    STAFF_VIEW = "customer:staff:view": "See staff and departments.";
    // Seed 003: integration.
    WEWORK_CONFIG_VIEW = "integration:wework:config:view": "See WeCom configurations (secrets masked).";
    WEWORK_CONFIG_MANAGE = "integration:wework:config:manage": "Create, change and delete WeCom configurations.";
    WEWORK_CONFIG_TEST = "integration:wework:config:test": "Test a WeCom configuration against WeCom.";
    WEWORK_SYNC_RUN = "integration:wework:sync:run": "Start syncs from WeCom.";
    WEWORK_SYNC_VIEW = "integration:wework:sync:view": "See sync status and logs.";
    WEWORK_CALLBACK_VIEW = "integration:wework:callback:view": "See received WeCom callbacks.";
    WEWORK_CALLBACK_REPLAY = "integration:wework:callback:replay": "Replay failed WeCom callbacks.";
    // The system itself.
    USER_VIEW = "system:user:view": "List users.";
    USER_MANAGE = "system:user:manage": "Create users, change roles, reset passwords.";
    TOKEN_MANAGE = "system:token:manage": "Create and revoke API tokens.";
    AUDIT_VIEW = "system:audit:view": "Read the audit log.";
    WEBHOOK_MANAGE = "system:webhook:manage": "Manage event webhooks.";
}

/// The built-in roles.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including users, tokens and the WeCom configuration.
    Admin,
    /// Day-to-day operations: customers, sends, SOPs, workflows, syncs; no system administration.
    Operator,
    /// Read-only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// Whether this role holds a permission.
    pub fn allows(self, permission: &str) -> bool {
        match self {
            Role::Admin => true,
            Role::Operator => !OPERATOR_EXCLUDED.contains(&permission) && ALL.contains(&permission),
            Role::Viewer => is_read_only(permission),
        }
    }

    /// Every permission this role holds.
    pub fn permissions(self) -> Vec<&'static str> {
        ALL.iter().copied().filter(|p| self.allows(p)).collect()
    }
}

/// What an operator may not do: administer the system and its WeCom connection.
const OPERATOR_EXCLUDED: &[&str] = &[
    USER_MANAGE,
    TOKEN_MANAGE,
    AUDIT_VIEW,
    WEBHOOK_MANAGE,
    WEWORK_CONFIG_MANAGE,
    DEVICE_MANAGE,
];

/// Viewing permissions end in `:view` (seed 004's style), plus the tag list with counts.
fn is_read_only(permission: &str) -> bool {
    permission.ends_with(":view") && permission != AUDIT_VIEW
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_names_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for p in ALL {
            assert!(seen.insert(p), "duplicate permission {p}");
            assert!(
                p.split(':').count() >= 2 && !p.contains(' '),
                "bad name {p}"
            );
        }
    }

    #[test]
    fn roles_nest() {
        for p in ALL {
            if Role::Viewer.allows(p) {
                assert!(Role::Operator.allows(p), "{p}");
            }
            if Role::Operator.allows(p) {
                assert!(Role::Admin.allows(p), "{p}");
            }
        }
        assert!(!Role::Viewer.allows(GROUP_SEND_CREATE));
        assert!(Role::Operator.allows(GROUP_SEND_CREATE));
        assert!(!Role::Operator.allows(USER_MANAGE));
    }
}
